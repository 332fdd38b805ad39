"""Local stand-ins, the local stack behind `make run`, and synthetic DICOM data."""
