"""FER2013: find it, parse it quickly, check every row, cache the result, split it.

Four layouts are understood (`load_fer2013` tells them apart by themselves):

1. The Kaggle CSV, header `emotion,pixels,Usage`, plain or gzip-compressed. `emotion` is the
   class index (see `emotion.labels.EMOTIONS`), `pixels` holds 48*48 = 2304 space-separated
   gray levels 0..255 in row-major order, `Usage` names the split: Training (28,709 rows),
   PublicTest (3,589; used for validation) or PrivateTest (3,589; the final test set).
2. The same CSV without the Usage column (`emotion,pixels`). The rows are then split per
   class with a seeded random generator: `TEST_FRACTION` (10%) goes to PrivateTest,
   `val_fraction` (10% by default) to PublicTest, the rest (80%) to Training.
3. An image folder, `ROOT/train/<class>/*.png|jpg` and `ROOT/test/<class>/*`, where each class
   folder is named after its emotion (case does not matter). `test` becomes PrivateTest.
   `ROOT/val/` (or `validation/`) becomes PublicTest when it exists; otherwise a seeded,
   per-class `val_fraction` of `train` is set aside as PublicTest.
4. A `.npz` holding `images` (N, 48, 48) uint8, `labels` (N,) and optionally `usage` (N,)
   split names: a compact copy, e.g. for moving the data set to another machine (see
   `save_npz`). Without `usage` it is split like the two-column CSV.

Every layout ends as the same `FER2013` object: three splits of (images, labels), the images
float32 (N, 1, 48, 48) holding the raw gray levels 0..255 (preprocessing is a separate step,
see `emotion.cnn.preprocess`) and the labels int64 (N,).

Why so much machinery for one CSV? The file is 300 MB of text holding 83 million numbers.
Converting them one by one in Python takes about 15 s on our 2-core machine; `_parse_pixels`
hands thousands of rows at a time to NumPy's C parser instead, so a full load (gunzip and
pandas included) takes about 5 s, and the result is cached as a compact .npz (83 MB) that
loads in under a second the next time.

The package, one topic a module:

    dataset.py   the FER2013 type, the constants, class counts and weights, find_dataset
    load.py      load_fer2013: the layouts told apart, FER+ applied, rows split
    csv_file.py  layouts 1 and 2, every row checked
    folders.py   layout 3
    npz.py       layout 4, and save_npz
    ferplus.py   FER+ majority labels (--ferplus) and vote distributions (--ferplus-targets)
    cache.py     the parsed arrays cached beside the source
"""

from emotion.training.data.dataset import (DEFAULT_DATA_DIRS, FER2013, HOW_TO_GET_FER2013,
                                           IMAGE_SIZE, SPLITS, class_counts, class_weights,
                                           find_dataset)
from emotion.training.data.ferplus import ferplus_labels, ferplus_votes
from emotion.training.data.load import load_fer2013, stratified_split
from emotion.training.data.npz import save_npz
from emotion.training.data.cache import cache_dir

__all__ = ["FER2013", "SPLITS", "IMAGE_SIZE", "DEFAULT_DATA_DIRS", "HOW_TO_GET_FER2013",
           "class_counts", "class_weights", "find_dataset", "load_fer2013", "stratified_split",
           "save_npz", "ferplus_labels", "ferplus_votes", "cache_dir"]
