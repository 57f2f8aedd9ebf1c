"""One-row predictions through LightGBM's fast single-row C API.

`Booster.predict` builds a predictor and deep-copies its arguments on every call: ~30 us
for one row, about a tenth of a served request, where the trees themselves take ~5 us.
LightGBM's C API has a path made for this (`LGBM_BoosterPredictForMatSingleRowFast`: the
configuration is set up once, then each call only walks the trees); the Python package
does not expose it, so it is called here through the library the package has loaded
(`lightgbm.basic._LIB`, the documented C API of c_api.h). Where that handle is missing
(another LightGBM build), `available()` is False and serving keeps `Booster.predict`;
`tests/unit/test_predict.py` checks the answers are identical and the path is in use.
"""

from __future__ import annotations

import ctypes
import threading
import weakref

import lightgbm as lgb
import numpy as np

PREDICT_NORMAL = 0  # C_API_PREDICT_NORMAL: probabilities or values, as Booster.predict
DTYPE_FLOAT64 = 1  # C_API_DTYPE_FLOAT64


def _library() -> ctypes.CDLL | None:
    library = getattr(getattr(lgb, "basic", None), "_LIB", None)
    return library if hasattr(library, "LGBM_BoosterPredictForMatSingleRowFast") else None


def available() -> bool:
    """Whether this LightGBM build offers the fast single-row path."""
    return _library() is not None


class SingleRowPredictor:
    """`booster.predict(row[None, :], num_threads=1)` for one float64 row, faster.

    The predictor holds its own copy of the model (loaded from the booster's text), so it
    lives apart from the Booster; a lock guards its one output buffer across threads.
    """

    def __init__(self, booster: lgb.Booster) -> None:
        library = _library()
        if library is None:
            raise RuntimeError("this LightGBM build has no fast single-row prediction")
        self._lib = library
        self.num_features = booster.num_feature()
        handle, config = ctypes.c_void_p(), ctypes.c_void_p()
        iterations = ctypes.c_int(0)
        self._check(
            library.LGBM_BoosterLoadModelFromString(
                ctypes.c_char_p(booster.model_to_string().encode()),
                ctypes.byref(iterations),
                ctypes.byref(handle),
            )
        )
        self._finalizer = weakref.finalize(self, _free, library, handle, config)
        classes = ctypes.c_int(0)
        self._check(library.LGBM_BoosterGetNumClasses(handle, ctypes.byref(classes)))
        self._check(
            library.LGBM_BoosterPredictForMatSingleRowFastInit(
                handle,
                ctypes.c_int(PREDICT_NORMAL),
                ctypes.c_int(0),  # start iteration
                ctypes.c_int(-1),  # every iteration: saved models hold the best ones only
                ctypes.c_int(DTYPE_FLOAT64),
                ctypes.c_int32(self.num_features),
                ctypes.c_char_p(b"num_threads=1"),
                ctypes.byref(config),
            )
        )
        self._config = config
        self.num_classes = classes.value
        self._out = np.zeros(self.num_classes, dtype=np.float64)
        self._out_pointer = self._out.ctypes.data_as(ctypes.POINTER(ctypes.c_double))
        self._out_length = ctypes.c_int64(0)
        self._lock = threading.Lock()

    def predict(self, row: np.ndarray) -> np.ndarray:
        """The booster's output for one row: shape (1,), or (1, k) for k classes."""
        data = np.ascontiguousarray(row, dtype=np.float64)
        if data.size != self.num_features:
            raise ValueError(f"expected {self.num_features} features, got {data.size}")
        with self._lock:
            self._check(
                self._lib.LGBM_BoosterPredictForMatSingleRowFast(
                    self._config,
                    data.ctypes.data_as(ctypes.c_void_p),
                    ctypes.byref(self._out_length),
                    self._out_pointer,
                )
            )
            out = self._out.copy()
        return out.reshape(1, -1) if self.num_classes > 1 else out

    def _check(self, status: int) -> None:
        if status != 0:
            message = self._lib.LGBM_GetLastError()  # restype c_char_p, set by lightgbm
            raise RuntimeError(f"LightGBM: {message.decode(errors='replace')}")


def _free(library: ctypes.CDLL, handle: ctypes.c_void_p, config: ctypes.c_void_p) -> None:
    if config.value:
        library.LGBM_FastConfigFree(config)
    if handle.value:
        library.LGBM_BoosterFree(handle)
