import numba, numpy as np, nnlite
numba.get_num_threads = lambda: 8
from nnlite.blas import blas_on_threads
from nnlite.plan import Plan
from nnlite.fold import fold_batch_norm
from emotion.cnn import models
from tests.test_fold import trained_looking
nnlite.use("numba")
model = fold_batch_norm(trained_looking(models.build("compact")))
plan = Plan(model, (1, 12, 12))
with blas_on_threads(1):
    for n in (1, 5):
        x = np.random.default_rng(n).standard_normal((n,1,12,12)).astype(np.float32)
        got = plan(x)
        with nnlite.no_grad(): want = model(nnlite.Tensor(x)).data
        print(n, np.abs(got-want).max())
        for st, sc in zip(plan._steps, plan._local.scratches):
            if isinstance(sc, dict): print(type(st).__name__, {k: (v.shape if hasattr(v,'shape') else [a.shape for a in v]) for k,v in sc.items()})
