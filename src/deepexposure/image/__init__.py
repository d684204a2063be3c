"""Image code: read and write photos (JPEG/PNG/TIFF/WebP and camera RAW), colour, exposure fusion, segmentation,
the renderers, recipes and looks. NumPy, OpenCV and Pillow only: no torch, no model. Imports nothing above it
(see docs/architecture.md)."""
