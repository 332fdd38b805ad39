# The operator CLI (`dicomflow`) as a container, for the Terraform's optional backfill job (terraform/backfill.tf)
# or any scheduler:  gcloud builds submit --tag REGION-docker.pkg.dev/PROJECT/REPO/dicomflow-cli .
# Not built in this repository's CI (no container engine there): `docker run IMAGE dicomflow --help` is the check.
FROM python:3.11-slim
WORKDIR /app
COPY requirements.txt pyproject.toml README.md ./
COPY dicomflow ./dicomflow
COPY healthcare_emulator ./healthcare_emulator
COPY requirements-emulator.txt ./
RUN pip install --no-cache-dir -r requirements.txt && pip install --no-cache-dir --no-deps .
USER nobody
CMD ["dicomflow", "--help"]
