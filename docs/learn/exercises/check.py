"""The exercise checker: python -m docs.learn.exercises.check avg_pool (or max_pool)

Compares your backward with central differences of the forward (float64, a random upstream
gradient: chapter 10), on a few shapes, and says what is wrong in one sentence.
"""

import argparse
import importlib
import sys

import numpy as np


def check_avg_pool(backward, forward=None):
    """None when `backward` is right, else a sentence saying where it goes wrong."""
    from docs.learn.exercises.avg_pool_backward import avg_pool_forward

    return _compare("avg_pool_backward", lambda gy, x, k: backward(gy, x.shape, k),
                    forward or avg_pool_forward)


def check_max_pool(backward, forward=None):
    """None when `backward` is right, else a sentence saying where it goes wrong. Max pooling's
    backward needs x itself (which value was largest), so it is passed x, not x's shape."""
    from docs.learn.exercises.max_pool_backward import max_pool_forward

    return _compare("max_pool_backward", lambda gy, x, k: backward(gy, x.copy(), k),
                    forward or max_pool_forward)


def _compare(name, backward, forward):
    """Central differences of sum(forward(x, k) * gy) against backward(gy, x, k) on a few
    shapes. Random normal x has no ties in a window, and eps is far below the gap between a
    window's two largest values, so max pooling's kinks are never crossed."""
    rng = np.random.default_rng(0)
    for shape, k in (((1, 1, 4, 4), 2), ((2, 3, 6, 6), 3), ((2, 2, 4, 6), 2)):
        x = rng.standard_normal(shape)
        gy = rng.standard_normal(forward(x, k).shape)
        try:
            gx = backward(gy, x, k)
        except NotImplementedError:
            return f"{name} is not written yet (it raises NotImplementedError)"
        if np.shape(gx) != shape:
            return f"for x of shape {shape} and k={k} it returned shape {np.shape(gx)}, not {shape}"
        numeric, eps, flat = np.zeros(shape), 1e-6, x.reshape(-1)
        for i in range(flat.size):
            keep = flat[i]
            flat[i] = keep + eps
            plus = (forward(x, k) * gy).sum()
            flat[i] = keep - eps
            minus = (forward(x, k) * gy).sum()
            flat[i] = keep
            numeric.reshape(-1)[i] = (plus - minus) / (2 * eps)
        error = np.abs(np.asarray(gx) - numeric)
        if error.max() > 1e-6:
            where = tuple(int(j) for j in np.unravel_index(error.argmax(), shape))
            return (f"for x of shape {shape} and k={k}, gx{where} is {gx[where]:.4f} but the "
                    f"central difference says {numeric[where]:.4f}")
    return None


# exercise name: (its checker, the module and function the learner writes)
EXERCISES = {"avg_pool": (check_avg_pool, "avg_pool_backward"),
             "max_pool": (check_max_pool, "max_pool_backward")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m docs.learn.exercises.check")
    parser.add_argument("exercise", choices=sorted(EXERCISES))
    args = parser.parse_args(argv)
    checker, name = EXERCISES[args.exercise]
    exercise = importlib.import_module(f"docs.learn.exercises.{name}")
    problem = checker(getattr(exercise, name))
    if problem:
        print(f"not yet: {problem}.", file=sys.stderr)
        return 1
    print("right: your backward matches the central differences on every shape.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
