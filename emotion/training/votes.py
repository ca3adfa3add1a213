"""Training on FER+'s votes: each face's ten annotators as a distribution over the 7 classes,
the target of the cross-entropy in place of one label (`emotion train --ferplus FILE
--ferplus-targets votes`), and the name a weight file records for the labels it learned.

A majority label says "sad"; six sad votes and four neutral say "sad 0.6, neutral 0.4", and
a face on which people split is not pushed to certainty it cannot have. Barsoum et al. (2016)
measured the distribution as the better target (84.99% against 83.85% for the majority, VGG13,
8 classes). The loss is the soft-target cross-entropy of distillation at temperature 1:

    q = (1 - s) * votes + s / K           (label smoothing s, as for one-hot labels)
    loss = -1/N sum_i sum_k q_ik log softmax(logits_i)_k

With --teacher the votes take the labels' place in distillation's mix (distill.mix):
(1 - w) * this loss + w * T^2 KL(teacher || student).
"""

from __future__ import annotations

import nnlite.functional as F

# What a weight file's meta "labels" says the model learned; files without the key (the
# shipped FER2013 weights) read as "fer2013".
LABEL_SETS = ("fer2013", "ferplus-majority", "ferplus-votes")
TARGETS = ("majority", "votes")


def loss(logits, votes, label_smoothing: float = 0.0):
    """Mean cross-entropy of logits (N, K) against vote distributions (N, K) float32 on the
    logits' device, smoothed toward the uniform distribution by `label_smoothing`."""
    k = votes.shape[1]
    s = votes.dtype.type(label_smoothing)
    targets = votes * (1 - s) + s / votes.dtype.type(k) if label_smoothing else votes
    return F.soft_target_cross_entropy(logits, targets, 1.0)


def labels_learned(config) -> str:
    """The label set of a training config: "fer2013", "ferplus-majority" or "ferplus-votes"."""
    if not config.get("ferplus"):
        return "fer2013"
    return f"ferplus-{config.get('ferplus_targets') or 'majority'}"
