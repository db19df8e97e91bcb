"""Values between the judge and a student's runner: tensors, arrays and plain data, nothing that runs.

Both directions use `torch.save`, and the reading side always loads with `weights_only=True`, so
whatever bytes a student's process writes can carry data but no code. NumPy arrays and dtypes,
which `weights_only` does not load, travel as tagged tensors and names. Anything else (an object
of the student's own class, a function) is refused on the sending side.

A message is a length (8 bytes, big-endian) and that many bytes.
"""

import io
import os
import struct

import numpy as np
import torch

MAX_MESSAGE = 1 << 30  # bytes; a larger announced length is a broken or hostile stream


class WireError(Exception):
    """A message that cannot be sent or read: the stream broke or holds something that is not data."""


def to_plain(value):
    """`value` with NumPy arrays and dtypes turned into what `weights_only` loads."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone() if not value.is_sparse else value.to_dense().cpu()
    if isinstance(value, np.ndarray):
        return {"__ndarray__": torch.from_numpy(np.ascontiguousarray(value).copy())}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, torch.dtype):
        return {"__dtype__": str(value).removeprefix("torch.")}
    if isinstance(value, np.dtype):
        return {"__np_dtype__": value.str}
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return value
    if isinstance(value, torch.Size):
        return tuple(value)
    if isinstance(value, (list, tuple)):
        return type(value)(to_plain(item) for item in value) if type(value) in (list, tuple) else list(map(to_plain, value))
    if isinstance(value, dict):
        return {str(key): to_plain(item) for key, item in value.items()}
    raise WireError(f"a {type(value).__name__} cannot be sent back: return tensors, arrays, numbers or strings")


def from_plain(value):
    if isinstance(value, dict):
        if set(value) == {"__ndarray__"}:
            return value["__ndarray__"].numpy()
        if set(value) == {"__dtype__"}:
            return getattr(torch, value["__dtype__"])
        if set(value) == {"__np_dtype__"}:
            return np.dtype(value["__np_dtype__"])
        return {key: from_plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(from_plain(item) for item in value)
    return value


def encode(value) -> bytes:
    buffer = io.BytesIO()
    torch.save({"value": to_plain(value)}, buffer)
    return buffer.getvalue()


def decode(data: bytes):
    try:
        loaded = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except Exception as error:  # a corrupted or hostile message: data only, or nothing
        raise WireError(f"a message could not be read as data: {type(error).__name__}") from None
    if not isinstance(loaded, dict) or "value" not in loaded:
        raise WireError("a message did not have the expected form")
    return from_plain(loaded["value"])


def send(fd: int, value) -> None:
    data = encode(value)
    payload = struct.pack(">Q", len(data)) + data
    view = memoryview(payload)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def read_exactly(fd: int, count: int) -> bytes:
    chunks, left = [], count
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise WireError("the other side closed the stream")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def receive(fd: int):
    (length,) = struct.unpack(">Q", read_exactly(fd, 8))
    if length > MAX_MESSAGE:
        raise WireError(f"a message announced {length} bytes")
    return decode(read_exactly(fd, length))
