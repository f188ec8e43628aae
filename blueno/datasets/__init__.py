"""Datasets: versions with checksums and lineage, import, derive, GCS, and preparation for a job.

The package is layered, bottom to top (an import-linter ``layers`` contract in
``pyproject.toml`` keeps it so; no module imports one above it):

- :mod:`~blueno.datasets.task`: the progress/cancel object long work reports through;
- :mod:`~blueno.datasets.stream`: samples read from disk by batch (files by rows, one file per sample);
- :mod:`~blueno.datasets.manifest`: manifests (every file's size and crc32c), hashing, verification;
- :mod:`~blueno.datasets.kinds`: what each kind of data looks like on disk, and its loader;
- :mod:`~blueno.datasets.registry`: the ``datasets`` table: versions, lookup, loading, verify, remove;
- :mod:`~blueno.datasets.importing` and :mod:`~blueno.datasets.remote`: import into the
  workspace; push, pull and listing on Google Cloud Storage;
- :mod:`~blueno.datasets.derive`: preprocessed versions with lineage and caching;
- :mod:`~blueno.datasets.prepare`: the version a job trains on (pulled, verified, derived), the demo.

This module is the facade the CLI, the GUI and the trainer call; the names
below are the public surface.
"""

from blueno.datasets.derive import derive, derive_chain
from blueno.datasets.importing import default_name, import_path
from blueno.datasets.prepare import import_source, make_demo, prepare
from blueno.datasets.registry import (
    DEMO_NAME,
    NAME_PATTERN,
    DatasetVersion,
    cache_dir,
    check_name,
    find,
    get,
    is_verified,
    load_arrays,
    parse_ref,
    remove,
    resolve,
    verify,
    versions,
)
from blueno.datasets.remote import pull, push

__all__ = [
    "DEMO_NAME",
    "NAME_PATTERN",
    "DatasetVersion",
    "cache_dir",
    "check_name",
    "default_name",
    "derive",
    "derive_chain",
    "find",
    "get",
    "import_path",
    "import_source",
    "is_verified",
    "load_arrays",
    "make_demo",
    "parse_ref",
    "prepare",
    "pull",
    "push",
    "remove",
    "resolve",
    "verify",
    "versions",
]
