"""Training (paper §4.2): recipes, data, the loop with exact resume and DDP."""
from .config import DataConfig, TrainConfig, load_recipe
from .data import build_train_dataset, build_val_dataset
from .trainer import TrainState, build_optimizer, poly_lr, train, train_one_epoch, validate

__all__ = ["DataConfig", "TrainConfig", "load_recipe", "build_train_dataset", "build_val_dataset", "TrainState",
           "build_optimizer", "poly_lr", "train", "train_one_epoch", "validate"]
