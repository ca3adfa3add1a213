"""The emotion models, by name. Every model takes (N, 1, 48, 48) float32 and returns (N, 7)
logits; softmax of the logits gives the seven class probabilities.

    seed     the original TFLearn network, layer for layer (56.9M parameters, mostly in its
             18432 -> 3072 dense layer)
    compact  a small VGG-style network with batch norm and global average pooling (584k)
    wide     the same shape with twice the channels (2.3M): more accuracy per epoch, ~4x the
             compute of compact
    mobile   depthwise-separable residual blocks (the mini-Xception / MobileNet idea), for real
             time on small machines and many faces a frame
    mobile_face  the mobile network with a second head on its last feature map: 68 facial
             landmarks and the head pose (yaw, pitch, roll) from the same pass as the emotion
             (FaceNet below)

Their size for one 48x48 face, as `nnlite.summary.count` counts it (a test keeps these lines
equal to the counter's output):

    seed     56,883.0k parameters, 138.19M multiply-adds
    compact     584.1k parameters, 96.22M multiply-adds
    wide      2,329.4k parameters, 383.54M multiply-adds
    mobile      183.5k parameters, 15.56M multiply-adds
    mobile_face 883.1k parameters, 15.56M multiply-adds

(The counter follows `model(x)`, the emotion path; mobile_face's geometry and presence heads
add 0.70M multiply-adds when `geometry_forward` runs them.)
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


# The geometry head's outputs: 68 landmarks as (x, y) pairs, then yaw, pitch and roll.
NUM_POINTS = 68
GEOMETRY_OUTPUTS = NUM_POINTS * 2 + 3


class FaceNet(L.Sequential):
    """The mobile network plus a geometry head: emotion, landmarks and head pose in one pass,
    and a presence head: is this crop a face, framed as the detector frames one?

    The layers of `mobile_net` stay as they are (the same parameter names "0.weight", ...),
    so the shipped mobile_fer2013 weights load into them unchanged (see `init_from`) and
    `model(x)` still returns the emotion logits (N, 7), which evaluate, export and explain
    use. `geometry_forward(x)` returns (logits, geometry, presence): geometry (N, 139) is the
    68 points then yaw/pitch/roll, in the normalised units of emotion.face.geometry (points as
    fractions of the crop from its centre, angles in units of 30 degrees); presence (N,) is
    a logit, sigmoid(presence) the probability that the crop holds a well-framed face.

    The presence head is what lets a video follow a face by its own landmarks (the crop of
    frame t+1 placed by the points of frame t, emotion.video.follow): a track whose crop
    slides off the face, or a detector's false box, is told apart from a face by it
    (trained on crops made to be off the face: emotion.training.presence).

    Why a head on the last feature map (256 x 3 x 3) and not on the pooled vector: global
    average pooling throws away *where* things are, which is all a landmark is. Flattening
    the 3x3 map keeps a coarse position per channel, and a hidden layer of 256 turns it into
    the 139 numbers: 0.6M multiply-adds, 4% of the backbone's.
    """

    HEAD_LAYERS = 3  # GlobalAvgPool2d, Dropout, Linear: the emotion head after the trunk

    def __init__(self, hidden=256, presence_hidden=32):
        super().__init__(*mobile_net().layers)
        channels = self.layers[-1].W.shape[1]  # the emotion head's input: the trunk's width
        self.geometry = L.Sequential(
            L.Flatten(),
            L.Linear(channels * 3 * 3, hidden), L.ReLU(),
            L.Linear(hidden, GEOMETRY_OUTPUTS, init="glorot"),
        )
        # On the 3x3 map too: a face slid a third of the crop aside is still a face to a
        # pooled vector, not to the map's corners. 74k multiply-adds.
        self.presence = L.Sequential(
            L.Flatten(),
            L.Linear(channels * 3 * 3, presence_hidden), L.ReLU(),
            L.Linear(presence_hidden, 1, init="glorot"),
        )

    def _children(self):
        yield from super()._children()
        yield "geometry", self.geometry
        yield "presence", self.presence

    def trunk(self):
        """The shared layers, input to the last feature map (N, 256, 3, 3)."""
        return L.Sequential(*self.layers[: -self.HEAD_LAYERS])

    def emotion_head(self):
        """Pooling, dropout and the dense layer: feature map -> emotion logits (N, 7)."""
        return L.Sequential(*self.layers[-self.HEAD_LAYERS:])

    def geometry_forward(self, x):
        """(emotion logits (N, 7), geometry (N, 139), presence logits (N,)) from one pass of
        the shared trunk."""
        features = self.trunk()(x)
        presence = self.presence(features)
        return (self.emotion_head()(features), self.geometry(features),
                presence.reshape(presence.shape[0]))


MODELS = {
    "seed": seed_net,
    "compact": lambda: vgg_net((32, 64, 128, 256)),
    "wide": lambda: vgg_net((64, 128, 256, 512)),
    "mobile": mobile_net,
    "mobile_face": FaceNet,
}

# The models with a geometry head (landmarks and pose): what `emotion train --landmarks` trains.
GEOMETRY_MODELS = ("mobile_face",)

# A model that may start from another's weights (--init): their shared layers are copied and
# the rest keeps its fresh initialisation.
INIT_FROM = {"mobile_face": ("mobile",)}


def has_geometry(model) -> bool:
    """Whether `model` also gives landmarks and pose (FaceNet, folded or not)."""
    return hasattr(model, "geometry_forward")


def has_presence(model) -> bool:
    """Whether `model` also says if its crop holds a framed face (FaceNet's presence head)."""
    return hasattr(model, "presence")


def init_from(model, arrays: dict, source: str) -> list[str]:
    """Copy the arrays whose names the model has (same shapes) into it; returns the names of
    the model's parameters left as initialised. For INIT_FROM: the mobile weights in
    FaceNet's trunk, with the geometry head left fresh."""
    own = model.state_dict()
    shared = {k: v for k, v in arrays.items() if k in own}
    if not shared:
        raise ValueError(f"{source} shares no parameter with this model")
    for name, array in shared.items():
        if tuple(array.shape) != tuple(own[name].shape):
            raise ValueError(f"{source}: parameter {name!r} has shape {tuple(array.shape)} in "
                             f"the file but {tuple(own[name].shape)} in the model")
    rest = [k for k in own if k not in shared]
    model.load_state_dict({**own, **shared}, source=source)
    return rest


def build(name: str):
    """A freshly initialised model by name (see MODELS)."""
    from emotion.errors import UserError

    if name not in MODELS:
        raise UserError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    return MODELS[name]()
