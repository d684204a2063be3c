"""deepexposure: learning to expose photos (DeepExposure, NeurIPS 2018), with exact exposure fusion."""

__version__ = "0.1.0"
