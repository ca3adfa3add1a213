"""PyTorch twins of emotion/cnn/models.py (seed, compact, wide, mobile), layer for layer, for the benchmarks.

Same layers, same shapes, same parameter counts (asserted in `build`); `copy_weights` loads an
nnlite model's parameters so the two can also be checked to compute the same logits.

TensorFlow's "same" padding: for stride-1 convolutions PyTorch's padding="same" is the same
thing (the odd extra pixel goes at the end). For the 3x3 stride-2 max-pools on 48 and 24
pixels "same" pads 0 before and 1 after, which is exactly what ceil_mode=True does (a window
hanging over the end takes the max of what it covers), without a padded copy.
"""

from emotion.labels import NUM_CLASSES

PARAMETER_COUNTS = {"seed": 56_883_015, "compact": 584_103, "wide": 2_329_415, "mobile": 183_495}


def seed_net(torch, num_classes=NUM_CLASSES):
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 64, 5, padding="same"), nn.ReLU(),
        nn.LocalResponseNorm(size=11, alpha=1.1e-3, beta=0.75, k=1.0),
        nn.MaxPool2d(3, 2, ceil_mode=True),                  # 48 -> 24
        nn.Conv2d(64, 64, 5, padding="same"), nn.ReLU(),
        nn.MaxPool2d(3, 2, ceil_mode=True),                  # 24 -> 12
        nn.Conv2d(64, 128, 4, padding="same"), nn.ReLU(),
        nn.Dropout(0.7),
        nn.Flatten(),
        nn.Linear(128 * 12 * 12, 3072), nn.ReLU(),
        nn.Linear(3072, num_classes),
    )


def _conv_bn_relu(nn, c_in, c_out):
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


def vgg_net(torch, widths=(32, 64, 128, 256), num_classes=NUM_CLASSES, dropout=0.5):
    nn = torch.nn
    w0, w1, w2, w3 = widths
    return nn.Sequential(
        *_conv_bn_relu(nn, 1, w0), *_conv_bn_relu(nn, w0, w0), nn.MaxPool2d(2),
        *_conv_bn_relu(nn, w0, w1), *_conv_bn_relu(nn, w1, w1), nn.MaxPool2d(2),
        *_conv_bn_relu(nn, w1, w2), *_conv_bn_relu(nn, w2, w2), nn.MaxPool2d(2),
        *_conv_bn_relu(nn, w2, w3),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(w3, num_classes),
    )


def mobile_net(torch, stem=16, widths=(24, 64, 128, 256), num_classes=NUM_CLASSES, dropout=0.3):
    """emotion.cnn.models.mobile_net: a 3x3 stem, then per width a residual block of two
    depthwise-separable convolutions and a 2x2 max pool beside a 1x1 stride-2 shortcut."""
    nn = torch.nn

    class Residual(nn.Module):
        def __init__(self, body, shortcut):
            super().__init__()
            self.body, self.shortcut = body, shortcut  # registered in nnlite's order

        def forward(self, x):
            return self.body(x) + self.shortcut(x)

    def separable(c_in, c_out):
        return [nn.Conv2d(c_in, c_in, 3, padding=1, groups=c_in, bias=False),
                nn.Conv2d(c_in, c_out, 1, bias=False)]

    blocks, c_in = [], stem
    for c_out in widths:
        body = nn.Sequential(*separable(c_in, c_out), nn.BatchNorm2d(c_out), nn.ReLU(),
                             *separable(c_out, c_out), nn.BatchNorm2d(c_out), nn.MaxPool2d(2))
        shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=2, bias=False),
                                 nn.BatchNorm2d(c_out))
        blocks += [Residual(body, shortcut), nn.ReLU()]
        c_in = c_out
    return nn.Sequential(
        nn.Conv2d(1, stem, 3, padding=1, bias=False), nn.BatchNorm2d(stem), nn.ReLU(),
        *blocks,
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(c_in, num_classes),
    )


MODELS = {"seed": seed_net, "compact": vgg_net,
          "wide": lambda torch: vgg_net(torch, (64, 128, 256, 512)), "mobile": mobile_net}


def build(torch, name):
    """The PyTorch twin of emotion.cnn.models.build(name), with its parameter count checked."""
    model = MODELS[name](torch)
    count = sum(p.numel() for p in model.parameters())
    if count != PARAMETER_COUNTS[name]:
        raise AssertionError(f"torch {name}: {count} parameters, nnlite has {PARAMETER_COUNTS[name]}")
    return model


def copy_weights(torch, model, ours):
    """Load an nnlite model's parameters (and batch-norm running statistics) into `model`.

    Both list their parameters layer by layer in the same order (W, b / gamma, beta), with the
    same shapes: PyTorch's Linear and Conv2d use nnlite's layouts.
    """
    from nnlite.backends import to_numpy

    theirs = list(model.parameters())
    mine = ours.parameters()
    if len(theirs) != len(mine):
        raise AssertionError(f"{len(theirs)} torch parameters vs {len(mine)} nnlite parameters")
    with torch.no_grad():
        for t, p in zip(theirs, mine):
            t.copy_(torch.from_numpy(to_numpy(p.data).copy()))
        stats = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        buffers = [dict(m.named_buffers()) for m in ours.modules() if m._buffers]
        for t, b in zip(stats, buffers):
            t.running_mean.copy_(torch.from_numpy(to_numpy(b["running_mean"]).copy()))
            t.running_var.copy_(torch.from_numpy(to_numpy(b["running_var"]).copy()))
    return model
