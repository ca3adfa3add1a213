"""Knowledge distillation: a small model learns from a big one's probabilities, not only from
the labels (Hinton, Vinyals and Dean, 2015).

A FER2013 label says "sad"; a trained teacher says "sad 0.55, neutral 0.30, fear 0.10, ...".
The second answer carries more: which classes this face is close to, and how sure one can
be about it (FER2013's labels are noisy: people agree on about 65% of them). The student is
trained on a mix of two losses (see `nnlite.functional.soft_target_cross_entropy`):

    loss = (1 - weight) * CE(student, label) + weight * T^2 * KL(q || softmax(student / T))

where q = softmax(teacher / T) is the teacher's answer softened by a temperature T > 1, which
raises the small probabilities so that their ranking is learned too.

Where the teacher's answers come from: computed once, before training, for every Training
image, as the mean of the teacher's softened probabilities on the image and on its mirror
image (a face and its mirror show the same expression, and the student's augmentation flips
half of the images). The alternative, running the teacher on every augmented batch, costs a
teacher forward pass per step: for the shipped wide teacher and the mobile student on this
project's 2-core CPU that is about as long as the student's whole training step (wide's
forward pass ran at ~4 ms an image while precomputing, the mobile step takes ~4.5 ms an
image), so it would about double the training time; the precomputed targets took 4 minutes
once. They do not follow the small shifts, rotations and erasing of the augmentation; whether
the per-batch teacher would be more accurate at equal time was not measured.
"""

from __future__ import annotations

import numpy as np

import nnlite
import nnlite.functional as F

from emotion.errors import UserError
from emotion.labels import NUM_CLASSES


def teacher_probabilities(weights, raw_images, temperature: float, device: str = "cpu",
                          batch_size: int = 256, progress: bool = True) -> np.ndarray:
    """(N, NUM_CLASSES) float32: softmax(teacher logits / T), averaged over each image and
    its mirror.

    raw_images: (N, 1, 48, 48) float32 in 0..255, before preprocessing: the teacher
    preprocesses them with the config its own weight file carries, which need not be the
    student's.
    """
    from emotion.cnn.preprocess import preprocess
    from emotion.cnn.classifier import EmotionClassifier

    teacher = EmotionClassifier.load(weights, backend=nnlite.current())
    x = preprocess(raw_images, teacher.preprocess_config)
    t = np.float32(temperature)
    out = np.empty((len(x), NUM_CLASSES), np.float32)
    starts = range(0, len(x), batch_size)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc=f"teacher {teacher.model_name}", unit="batch", leave=False)
    with nnlite.no_grad():
        for start in starts:
            views = x[start:start + batch_size]
            total = 0
            for view in (views, views[..., ::-1]):  # the image and its mirror
                batch = nnlite.Tensor(nnlite.to_device(np.ascontiguousarray(view), device))
                total = total + nnlite.to_numpy(F.softmax(teacher.model(batch) / t).data)
            out[start:start + len(views)] = total / 2
    return out


def check_targets(targets, n: int, source) -> np.ndarray:
    """The teacher's probabilities as read back from a run folder, checked."""
    if targets.shape != (n, NUM_CLASSES) or not np.all(np.isfinite(targets)):
        raise UserError(f"{source}: the teacher's probabilities have shape {targets.shape} "
                        f"(expected ({n}, {NUM_CLASSES}), all finite): delete it to have it "
                        "recomputed")
    return targets.astype(np.float32, copy=False)


def loss(logits, labels, soft_targets, temperature, weight, **hard_options):
    """The distillation loss of one batch (see the module docstring)."""
    hard = F.softmax_cross_entropy(logits, labels, **hard_options)
    return mix(hard, logits, soft_targets, temperature, weight)


def mix(hard, logits, soft_targets, temperature, weight):
    """(1 - weight) * `hard` + weight * T^2 KL(teacher || student): the teacher's term joined
    to a loss against the labels (`hard`: the one-hot cross-entropy, or the cross-entropy
    against FER+'s votes, emotion.training.votes)."""
    if weight == 0:
        return hard
    soft = F.soft_target_cross_entropy(logits, soft_targets, temperature)
    # Less the teacher's own entropy (a constant for the student): the soft term is then
    # T^2 KL(q || p), which is 0 when the student matches the teacher, so the loss printed
    # during training reads like a loss rather than growing with T^2.
    xp = nnlite.backends.get_array_module(soft_targets)
    q = soft_targets
    # (an array, not a float: on the GPU a float would wait for the device every step)
    entropy = -(q * xp.log(xp.where(q > 0, q, 1))).sum() / q.dtype.type(len(q))
    return hard * (1.0 - weight) + (soft - entropy * q.dtype.type(temperature ** 2)) * weight
