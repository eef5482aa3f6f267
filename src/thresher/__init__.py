"""thresher: target-aware, cheap pre-training for transfer learning."""

__version__ = "0.1.0"
SCHEMA_VERSION = 1  # version of the artefact formats written to run folders
