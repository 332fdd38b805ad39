# The operator CLI (`dicomflow`) as a container, for the Terraform's optional backfill job (terraform/backfill.tf)
# or any scheduler:  gcloud builds submit --tag REGION-docker.pkg.dev/PROJECT/REPO/dicomflow-cli .
# CI has no container engine: tests/integration/test_container_image.py follows the COPY, RUN and CMD lines in a
# fresh venv instead (the base image itself is not checked). The image holds the CLI only: `healthcare-emulator`
# in it says to install the emulator extra.
FROM python:3.11-slim
WORKDIR /app
# requirements.txt is the lock (exact versions and hashes, generated from requirements.in): pip checks every
# file it installs against it; the package itself adds no dependency (--no-deps).
COPY requirements.txt requirements.in pyproject.toml README.md ./
COPY dicomflow ./dicomflow
COPY healthcare_emulator ./healthcare_emulator
COPY requirements-emulator.txt ./
RUN pip install --no-cache-dir --require-hashes -r requirements.txt && pip install --no-cache-dir --no-deps .
USER nobody
CMD ["dicomflow", "--help"]
