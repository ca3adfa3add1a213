"""Optimizers (momentum SGD, Adam) and learning-rate schedules.

An optimizer keeps one state array per parameter (velocity, moments) on the parameter's
device and updates the parameter in place with a fused kernel from the backend.
"""

import math

from nnlite import backends


class Optimizer:
    def __init__(self, params, lr):
        self.params = [p for p in params]
        if not self.params:
            raise ValueError("optimizer got no parameters")
        self.lr = float(lr)
        self.steps = 0

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    def step(self):
        self.steps += 1
        for i, p in enumerate(self.params):
            if p.grad is not None:
                self._update(i, p)

    def _update(self, i, p):
        raise NotImplementedError

    # -- checkpoints: the state arrays on the host, so a resumed run continues exactly ----------
    def state_dict(self):
        state = {"lr": self.lr, "steps": self.steps}
        for key, arrays in self._state_arrays().items():
            for i, array in enumerate(arrays):
                state[f"{key}.{i}"] = backends.to_numpy(array)
        return state

    def load_state_dict(self, state):
        self.lr, self.steps = float(state["lr"]), int(state["steps"])
        for key, arrays in self._state_arrays().items():
            for i, array in enumerate(arrays):
                arrays[i] = backends.to_device(state[f"{key}.{i}"].astype(array.dtype),
                                               backends.device_of(array))


def _zeros_like_params(params):
    return [backends.get_array_module(p.data).zeros_like(p.data) for p in params]


class MomentumSGD(Optimizer):
    """SGD with momentum (PyTorch's form): v = momentum * v + g; p -= lr * v.

    Nesterov looks ahead: p -= lr * (g + momentum * v). weight_decay adds wd * p to g (L2).
    """

    def __init__(self, params, lr, momentum=0.9, nesterov=False, weight_decay=0.0):
        super().__init__(params, lr)
        self.momentum, self.nesterov, self.weight_decay = momentum, nesterov, weight_decay
        self.velocity = _zeros_like_params(self.params)

    def _update(self, i, p):
        backends.kernels_for(p.data).sgd_update(
            p.data, p.grad, self.velocity[i], self.lr, self.momentum, self.weight_decay,
            self.nesterov,
        )

    def _state_arrays(self):
        return {"velocity": self.velocity}


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with bias-corrected moments."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr)
        self.beta1, self.beta2 = betas
        self.eps, self.weight_decay = eps, weight_decay
        self.m = _zeros_like_params(self.params)
        self.v = _zeros_like_params(self.params)

    def _update(self, i, p):
        backends.kernels_for(p.data).adam_update(
            p.data, p.grad, self.m[i], self.v[i], self.lr, self.beta1, self.beta2, self.eps,
            self.weight_decay, self.steps,
        )

    def _state_arrays(self):
        return {"m": self.m, "v": self.v}


# -- learning-rate schedules: call .step() once per epoch --------------------------------------
class StepLR:
    """lr = base_lr * gamma ** (epoch // step_size)."""

    def __init__(self, optimizer, step_size, gamma=0.1):
        self.optimizer, self.step_size, self.gamma = optimizer, step_size, gamma
        self.base_lr, self.epoch = optimizer.lr, 0

    def step(self, metric=None):
        self.epoch += 1
        self.optimizer.lr = self.base_lr * self.gamma ** (self.epoch // self.step_size)

    def state_dict(self):
        return {"epoch": self.epoch, "base_lr": self.base_lr}

    def load_state_dict(self, state):
        self.epoch, self.base_lr = int(state["epoch"]), float(state["base_lr"])


class CosineLR(StepLR):
    """Linear warm-up for `warmup` epochs, then a half cosine from base_lr to min_lr."""

    def __init__(self, optimizer, total_epochs, min_lr=0.0, warmup=0):
        self.optimizer, self.total, self.min_lr, self.warmup = optimizer, total_epochs, min_lr, warmup
        self.base_lr, self.epoch = optimizer.lr, 0
        if warmup:
            optimizer.lr = self.base_lr / (warmup + 1)

    def step(self, metric=None):
        self.epoch += 1
        if self.epoch < self.warmup:
            self.optimizer.lr = self.base_lr * (self.epoch + 1) / (self.warmup + 1)
            return
        t = min((self.epoch - self.warmup) / max(self.total - self.warmup, 1), 1.0)
        self.optimizer.lr = self.min_lr + 0.5 * (self.base_lr - self.min_lr) * (1 + math.cos(math.pi * t))


class ReduceLROnPlateau:
    """Multiply lr by `factor` when the metric has not improved for `patience` epochs.

    mode "max" for accuracy, "min" for loss.
    """

    def __init__(self, optimizer, mode="max", factor=0.5, patience=3, min_lr=1e-6):
        self.optimizer, self.mode, self.factor = optimizer, mode, factor
        self.patience, self.min_lr = patience, min_lr
        self.best, self.bad_epochs = None, 0

    def step(self, metric):
        better = self.best is None or (metric > self.best if self.mode == "max" else metric < self.best)
        if better:
            self.best, self.bad_epochs = metric, 0
            return
        self.bad_epochs += 1
        if self.bad_epochs > self.patience:
            self.optimizer.lr = max(self.optimizer.lr * self.factor, self.min_lr)
            self.bad_epochs = 0

    def state_dict(self):
        return {"best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state):
        self.best, self.bad_epochs = state["best"], int(state["bad_epochs"])
