"""Checking the backend name and n_jobs a user asked for, in joblib's terms."""

import importlib.util
import numbers

from parmagic.common.errors import ParmagicInputError
from parmagic.common.joblib_internals import configured_backend, registered_backends

# Backends joblib knows by name once an extra package is installed.
_OPTIONAL_BACKENDS = {
    "dask": ("distributed", "dask"),
    "ray": ("ray", "ray"),
}


def known_backends():
    """Names accepted by ``backend=``, registered ones first."""
    names = list(registered_backends())
    names += [name for name in _OPTIONAL_BACKENDS if name not in names]
    return names


def check_backend(backend):
    """Return ``backend`` if joblib can run it, else raise a clear error.

    ``None`` means "whatever an enclosing ``joblib.parallel_config`` says,
    else loky".
    """
    if backend is None or backend in registered_backends():
        return backend
    if not isinstance(backend, str):
        raise ParmagicInputError(
            f"backend must be a name such as 'loky', not {type(backend).__name__}"
        )
    if backend in _OPTIONAL_BACKENDS:
        module, extra = _OPTIONAL_BACKENDS[backend]
        if importlib.util.find_spec(module) is None:
            raise ParmagicInputError(
                f"backend {backend!r} needs the {module!r} package: "
                f'pip install "parmagic[{extra}]"'
            )
        return backend
    raise ParmagicInputError(
        f"unknown backend {backend!r}; expected one of {', '.join(known_backends())}"
    )


def streams_results(backend):
    """Whether ``joblib.Parallel`` can hand back results one by one on this
    backend (joblib's multiprocessing backend cannot)."""
    if backend is None:
        backend_class = type(configured_backend()[0])
    else:
        backend_class = registered_backends().get(backend)
    return getattr(backend_class, "supports_return_generator", True)


def check_n_jobs(n_jobs):
    """Return the worker count to ask joblib for.

    ``None`` takes an enclosing ``joblib.parallel_config(n_jobs=...)`` when
    there is one, else -1 (all cores), as the magics document.
    """
    if n_jobs is None:
        _, configured = configured_backend()
        return -1 if configured is None else configured
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, numbers.Integral):
        raise ParmagicInputError(
            f"n_jobs must be a whole number such as 4 or -1 (all cores), not {n_jobs!r}"
        )
    if n_jobs == 0:
        raise ParmagicInputError(
            "n_jobs=0 runs nothing; use a positive number of workers, "
            "or -1 for all cores (-2 for all but one)"
        )
    return int(n_jobs)


def check_batch_size(batch_size):
    """``"auto"`` or a positive whole number."""
    if batch_size == "auto":
        return batch_size
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, numbers.Integral)
        or batch_size < 1
    ):
        raise ParmagicInputError(
            f"batch_size must be 'auto' or a positive whole number, not {batch_size!r}"
        )
    return int(batch_size)
