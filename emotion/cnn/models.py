"""The emotion models, by name. Every model takes (N, 1, 48, 48) float32 and returns (N, 7)
logits; softmax of the logits gives the seven class probabilities.

    seed     the original TFLearn network, layer for layer (56.9M parameters, mostly in its
             18432 -> 3072 dense layer)
    compact  a small VGG-style network with batch norm and global average pooling (584k)
    wide     the same shape with twice the channels (2.3M): more accuracy per epoch, ~4x the
             compute of compact
    mobile   depthwise-separable residual blocks (the mini-Xception / MobileNet idea), for real
             time on small machines and many faces a frame

Their size for one 48x48 face, as `nnlite.summary.count` counts it (a test keeps these lines
equal to the counter's output):

    seed     56,883.0k parameters, 138.19M multiply-adds
    compact     584.1k parameters, 96.22M multiply-adds
    wide      2,329.4k parameters, 383.54M multiply-adds
    mobile      183.5k parameters, 15.56M multiply-adds
"""

from nnlite import layers as L

from emotion.labels import NUM_CLASSES

DEFAULT_MODEL = "wide"  # the shipped model: best PublicTest accuracy of the runs we made


def seed_net(num_classes=NUM_CLASSES):
    """The original TFLearn design, with TensorFlow's 'same' padding everywhere.

    TFLearn's local_response_normalization defaults (depth_radius=5, alpha=1e-4, beta=0.75,
    bias=1) are size 11, alpha 1.1e-3 in PyTorch's convention (alpha is divided by size).
    TFLearn's dropout(x, 0.3) KEEPS 30% of units: a drop probability of 0.7 here.
    """
    return L.Sequential(
        L.Conv2d(1, 64, 5, pad="same"), L.ReLU(),
        L.LocalResponseNorm(size=11, alpha=1.1e-3, beta=0.75, k=1.0),
        L.MaxPool2d(3, 2, pad="same"),                       # 48 -> 24
        L.Conv2d(64, 64, 5, pad="same"), L.ReLU(),
        L.MaxPool2d(3, 2, pad="same"),                       # 24 -> 12
        L.Conv2d(64, 128, 4, pad="same"), L.ReLU(),
        L.Dropout(0.7),
        L.Flatten(),
        L.Linear(128 * 12 * 12, 3072), L.ReLU(),
        L.Linear(3072, num_classes, init="glorot"),
    )


def _conv_bn_relu(c_in, c_out):
    # No conv bias: the batch norm right after it subtracts the mean, so a bias would cancel.
    # The BatchNorm2d and the ReLU after it run as one fused op (F.batch_norm(relu=True)):
    # L.Sequential does that for every batch norm directly followed by a ReLU (see
    # nnlite.layers.Sequential), giving the same values with one pass less. The layers stay
    # three, so the weight names ("1.gamma", "1.beta", ...) and Grad-CAM see them as listed.
    return [L.Conv2d(c_in, c_out, 3, pad=1, bias=False), L.BatchNorm2d(c_out), L.ReLU()]


def vgg_net(widths=(32, 64, 128, 256), num_classes=NUM_CLASSES, dropout=0.5):
    """[conv3x3 w0, BN, ReLU] x2, max-pool 2; the same for w1 and w2; conv3x3 w3, BN, ReLU;
    global average pool; dropout; dense w3 -> classes.  48 -> 24 -> 12 -> 6 pixels."""
    w0, w1, w2, w3 = widths
    return L.Sequential(
        *_conv_bn_relu(1, w0), *_conv_bn_relu(w0, w0), L.MaxPool2d(2),
        *_conv_bn_relu(w0, w1), *_conv_bn_relu(w1, w1), L.MaxPool2d(2),
        *_conv_bn_relu(w1, w2), *_conv_bn_relu(w2, w2), L.MaxPool2d(2),
        *_conv_bn_relu(w2, w3),
        L.GlobalAvgPool2d(),
        L.Dropout(dropout),
        L.Linear(w3, num_classes, init="glorot"),
    )


def _separable(c_in, c_out):
    """A depthwise-separable 3x3 convolution (Xception's SeparableConv2D): a 3x3 convolution
    of each channel on its own (groups=c_in: 9 weights a channel), then a 1x1 convolution
    that mixes the channels. 9*C + C*OC weights instead of 9*C*OC: the spatial and the
    cross-channel work are done apart, at about 1/9 of the multiply-adds for wide layers."""
    return [L.Conv2d(c_in, c_in, 3, pad=1, groups=c_in, bias=False),
            L.Conv2d(c_in, c_out, 1, bias=False)]


def _mobile_block(c_in, c_out):
    """Two separable convolutions and a 2x2 max pool, with a residual 1x1 stride-2
    convolution beside them (mini-Xception's module). Halves the map, c_in -> c_out."""
    body = L.Sequential(*_separable(c_in, c_out), L.BatchNorm2d(c_out), L.ReLU(),
                        *_separable(c_out, c_out), L.BatchNorm2d(c_out),
                        L.MaxPool2d(2))
    shortcut = L.Sequential(L.Conv2d(c_in, c_out, 1, stride=2, bias=False), L.BatchNorm2d(c_out))
    return L.Residual(body, shortcut)


def mobile_net(stem=16, widths=(24, 64, 128, 256), num_classes=NUM_CLASSES, dropout=0.3):
    """A full 3x3 stem at 48x48, then one residual block per width, each halving the map
    (48 -> 24 -> 12 -> 6 -> 3), a ReLU after each residual sum, global average pooling,
    dropout and the dense layer. Most weights sit in the 1x1 convolutions of the last block.
    """
    blocks, c_in = [], stem
    for c_out in widths:
        blocks += [_mobile_block(c_in, c_out), L.ReLU()]
        c_in = c_out
    return L.Sequential(
        L.Conv2d(1, stem, 3, pad=1, bias=False), L.BatchNorm2d(stem), L.ReLU(),
        *blocks,
        L.GlobalAvgPool2d(),
        L.Dropout(dropout),
        L.Linear(c_in, num_classes, init="glorot"),
    )


MODELS = {
    "seed": seed_net,
    "compact": lambda: vgg_net((32, 64, 128, 256)),
    "wide": lambda: vgg_net((64, 128, 256, 512)),
    "mobile": mobile_net,
}


def build(name: str):
    """A freshly initialised model by name (see MODELS)."""
    from emotion.errors import UserError

    if name not in MODELS:
        raise UserError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    return MODELS[name]()
