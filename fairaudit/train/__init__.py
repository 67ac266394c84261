"""One training loop for every model and mitigation method."""

from fairaudit.train.loop import TrainConfig, cross_entropy_step, fit, make_loader, make_optimizer

__all__ = ["TrainConfig", "cross_entropy_step", "fit", "make_loader", "make_optimizer"]
