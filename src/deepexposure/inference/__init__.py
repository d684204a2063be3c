"""Inference: pick exposure values for a photo and render them. The episode's NumPy core, the global-EV (natural)
model, the ONNX policy, the one model loader and :class:`~deepexposure.inference.enhance.Enhancer`. No torch here
(a ``.pt`` policy is the one thing that needs it, loaded from :mod:`deepexposure.learning` on demand)."""
