"""Beyond one machine: dask.distributed and Ray, through joblib's backend
registry.

joblib serves both: its ``"dask"`` backend submits each task to a
``distributed.Client`` and Ray registers a ``"ray"`` backend. What joblib
does not do is find the client: here it is the notebook's active client, or
one connected to the address the user gave (kept for the next run), and an
unreachable scheduler is a clear error within a few seconds.
"""

import contextlib

from joblib import parallel_config

from parmagic.common.errors import ParmagicInputError

CONNECT_TIMEOUT = 5  # seconds to reach a dask scheduler
_clients = {}  # scheduler address -> Client connected by parmagic

NO_CLIENT = (
    "-b dask needs a dask.distributed Client: create one in the notebook "
    "(from distributed import Client; client = Client() starts a local "
    "cluster, Client('tcp://host:8786') joins one), or give --scheduler ADDRESS"
)


@contextlib.contextmanager
def backend_for(backend, scheduler):
    """Make ``backend`` ready for a ``joblib.Parallel`` created inside the
    block; yields the backend argument to give that ``Parallel``."""
    if backend == "dask":
        with parallel_config(backend="dask", client=dask_client(scheduler)):
            yield None  # Parallel takes the configured dask backend
        return
    if scheduler is not None:
        raise ParmagicInputError(
            f"--scheduler {scheduler} is for the dask backend (-b dask), "
            f"not {backend or 'the default backend'}"
        )
    if backend == "ray":
        from ray.util.joblib import register_ray

        register_ray()  # Ray starts a local instance unless one is running
    yield backend


def dask_client(address):
    """The client to run on: the notebook's default one, or one connected to
    ``address`` (reused while it stays connected)."""
    from distributed import Client, default_client

    if address is None:
        try:
            return default_client()
        except ValueError:
            raise ParmagicInputError(NO_CLIENT) from None
    client = _clients.get(address)
    if client is None or client.status not in ("running", "connecting"):
        try:
            client = Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
        except Exception as exc:  # OSError, TimeoutError, ValueError for a bad address
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ParmagicInputError(
                f"cannot reach the dask scheduler at {address} within "
                f"{CONNECT_TIMEOUT} s ({reason})"
            ) from None
        _clients[address] = client
    return client


def close_clients():
    """Close the clients parmagic connected with ``--scheduler``."""
    while _clients:
        _, client = _clients.popitem()
        client.close()
