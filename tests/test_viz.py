"""nnlite.viz: the dot text is a well-formed graph of the forward pass, and the saliency /
Grad-CAM gradients are the ones a plain backward gives."""

import re

import numpy as np
import pytest

import nnlite
import nnlite.functional as F
import nnlite.layers as L
from nnlite.viz import layer_outputs, saliency_and_grad_cam, to_dot

NODE = re.compile(r'^\s*(n\d+) \[label="((?:[^"\\]|\\.)*)"(?:, \w+="(?:[^"\\]|\\.)*")*\];$')
EDGE = re.compile(r"^\s*(n\d+) -> (n\d+);$")


def parse_dot(text):
    """A tiny parser for the subset of dot that to_dot writes: {node: label}, [(a, b)]."""
    lines = text.strip().splitlines()
    assert re.match(r'^digraph "(?:[^"\\]|\\.)*" \{$', lines[0]), lines[0]
    assert lines[-1] == "}"
    unquoted = re.sub(r'"(?:[^"\\]|\\.)*"', '""', text)  # braces inside labels do not count
    assert unquoted.count("{") == unquoted.count("}") == 1
    nodes, edges = {}, []
    for line in lines[1:-1]:
        if line.strip().startswith("node ["):
            continue
        if m := NODE.match(line):
            assert m.group(1) not in nodes, f"node {m.group(1)} declared twice"
            nodes[m.group(1)] = m.group(2).replace("\\n", "\n")
        elif m := EDGE.match(line):
            edges.append((m.group(1), m.group(2)))
        else:
            raise AssertionError(f"not a node or an edge: {line!r}")
    for a, b in edges:
        assert a in nodes and b in nodes, f"edge {a} -> {b} uses an undeclared node"
    return nodes, edges


def small_net():
    return L.Sequential(
        L.Conv2d(1, 4, 3, pad=1), L.BatchNorm2d(4), L.ReLU(), L.MaxPool2d(2),
        L.Flatten(), L.Dropout(0.5), L.Linear(4 * 4 * 4, 3),
    )


def test_to_dot_draws_the_forward_pass_of_a_small_net():
    net = small_net()
    x = nnlite.Tensor(np.random.default_rng(0).random((2, 1, 8, 8), dtype=np.float32))
    loss = F.softmax_cross_entropy(net(x), np.array([0, 2]))
    nodes, edges = parse_dot(to_dot(loss, params=dict(net.named_parameters())))

    # Flatten is a Reshape; Sequential runs BatchNorm2d + ReLU as one op, which says so
    expected = ("Conv2d", "BatchNorm", "MaxPool2d", "Reshape", "Dropout", "Linear",
                "SoftmaxCrossEntropy")
    ops = [label.split("\n")[0] for label in nodes.values()]
    for op in expected:
        assert ops.count(op) == 1, (op, ops)
    labels = list(nodes.values())
    assert "BatchNorm\ntrain True\nrelu True" in labels, labels
    assert "input\n(2, 1, 8, 8) float32" in labels
    assert "0.W\n(4, 1, 3, 3)" in labels and "6.b\n(3,)" in labels  # parameters, by name
    assert "output\n() float32" in labels
    # Every op has an edge in and an edge out; the input feeds the convolution.
    by_label = {v: k for k, v in nodes.items()}
    conv = next(k for k, v in nodes.items() if v.startswith("Conv2d"))
    assert (by_label["input\n(2, 1, 8, 8) float32"], conv) in edges
    for key, label in nodes.items():
        if label.split("\n")[0] in expected:
            assert any(b == key for _, b in edges) and any(a == key for a, _ in edges), label


def test_to_dot_after_backward_says_to_call_it_before():
    net = small_net()
    loss = F.softmax_cross_entropy(net(nnlite.Tensor(np.ones((2, 1, 8, 8), np.float32))),
                                   np.array([0, 1]))
    loss.backward()
    with pytest.raises(RuntimeError, match="before backward"):
        to_dot(loss)


def test_to_dot_escapes_quotes_in_names():
    w = nnlite.Tensor(np.ones(3, np.float32), requires_grad=True)
    y = (w * 2.0).sum()
    nodes, _ = parse_dot(to_dot(y, params={'say "hi"': w}, name='a "graph"'))
    assert 'say \\"hi\\"\n(3,)' in nodes.values()


def test_split_backward_equals_one_backward():
    """Grad-CAM's two halves joined by `A.backward(A_leaf.grad)` give the true d score / dx."""
    net = L.Sequential(L.Conv2d(1, 3, 3, pad=1), L.ReLU(), L.Conv2d(3, 4, 3, pad=1), L.ReLU(),
                       L.GlobalAvgPool2d(), L.Linear(4, 5)).eval()
    x = np.random.default_rng(1).standard_normal((1, 1, 6, 6)).astype(np.float32)

    logits, saliency, cam, activations = saliency_and_grad_cam(net, x, class_index=2, split=3)
    assert all(p.grad is None for p in net.parameters())  # the model is left as it was

    whole = nnlite.Tensor(x, requires_grad=True)
    net(whole)[0, 2].backward()
    np.testing.assert_allclose(saliency, np.abs(whole.grad[0, 0]), rtol=1e-5, atol=1e-7)
    outputs = layer_outputs(net, nnlite.Tensor(x))
    np.testing.assert_allclose(logits, outputs[-1].data, rtol=1e-6)
    np.testing.assert_array_equal(activations, outputs[3].data)
    assert cam.shape == (6, 6) and (cam >= 0).all()
    assert saliency.dtype == cam.dtype == np.float32
