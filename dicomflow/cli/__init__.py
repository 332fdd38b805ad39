"""The operator CLI: ``dicomflow status | backfill | verify | plan | requeue``, in the cloud and locally."""
