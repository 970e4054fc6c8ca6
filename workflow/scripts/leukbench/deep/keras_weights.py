"""Keras' published ImageNet weight files: a plain table, importable without TensorFlow.

The Snakefile reads it at parse time to plan the fetch rule, so it must not import Keras.
"""

from __future__ import annotations

# The "no top" ImageNet weight files keras.applications downloads (keras 3.15.1,
# keras/src/applications/{vgg16,resnet,densenet,convnext}.py: WEIGHTS_PATH_NO_TOP /
# BASE_WEIGHTS_PATH + file name, and the ``file_hash`` passed to ``get_file``). Keras' get_file
# treats a 32-hex-digit hash as MD5 and a 64-digit one as SHA-256.
_KERAS_BASE = "https://storage.googleapis.com/tensorflow/keras-applications/"
KERAS_WEIGHTS: dict[str, dict[str, str]] = {
    "vgg16": {
        "file": "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "url": _KERAS_BASE + "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "hash": "6d6bbae143d832006294945121d1f1fc",
        "hash_algorithm": "md5",
    },
    "resnet50": {
        "file": "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "url": _KERAS_BASE + "resnet/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "hash": "4d473c1dd8becc155b73f8504c6f6626",
        "hash_algorithm": "md5",
    },
    "densenet201": {
        "file": "densenet201_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "url": _KERAS_BASE + "densenet/densenet201_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "hash": "c13680b51ded0fb44dff2d8f86ac8bb1",
        "hash_algorithm": "md5",
    },
    "convnext_tiny": {
        "file": "convnext_tiny_notop.h5",
        "url": _KERAS_BASE + "convnext/convnext_tiny_notop.h5",
        "hash": "d547c096cabd03329d7be5562c5e14798aa39ed24b474157cef5e85ab9e49ef1",
        "hash_algorithm": "sha256",
    },
}


def weight_sources() -> dict[str, dict[str, str]]:
    """File name -> {url, sha256 or md5}: what the fetch rule downloads and verifies."""
    return {
        entry["file"]: {"url": entry["url"], entry["hash_algorithm"]: entry["hash"]}
        for entry in KERAS_WEIGHTS.values()
    }
