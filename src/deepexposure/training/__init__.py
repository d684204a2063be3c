"""Training of DeepExposure I and II (unpaired, WGAN-GP reward, synchronous gradient gathering). See docs/learning.md."""

from deepexposure.training.config import ModelConfig, OptimConfig, RLConfig, RunConfig, TrainConfig
from deepexposure.training.dataset import TrainData, build_training_data
from deepexposure.training.noise import OUNoise
from deepexposure.training.trainer import Trainer, TrainingError
from deepexposure.training.workers import compute_gradients

__all__ = ["ModelConfig", "OptimConfig", "RLConfig", "RunConfig", "TrainConfig", "TrainData", "build_training_data",
           "OUNoise", "Trainer", "TrainingError", "compute_gradients"]
