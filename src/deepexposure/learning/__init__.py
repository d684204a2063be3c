"""Learning (torch): the actor and critics, the torch episode, the policy file, ONNX export, and training of
DeepExposure I and II (unpaired, WGAN-GP reward, synchronous gradient gathering). See docs/learning.md.

Import from the modules: :mod:`.config` (``TrainConfig`` and its parts), :mod:`.dataset` (``TrainData``),
:mod:`.trainer` (``Trainer``), :mod:`.workers`, :mod:`.noise`, :mod:`.distributed`, :mod:`.checkpoint`."""
