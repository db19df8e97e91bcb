"""An error in one line: what the command line, the GPU check and `predict`'s skipped files show."""


def one_line(error: BaseException, with_type: bool = False) -> str:
    """The first line of `error`'s message, or its type's name when the message is empty.

    Args:
        with_type: put the type's name first ("RuntimeError: CUDA error ..."), for reports where
            the kind of failure matters as much as its message.
    """
    text = str(error).strip()
    line = text.splitlines()[0] if text else ""
    if with_type:
        return f"{type(error).__name__}: {line}" if line else type(error).__name__
    return line or type(error).__name__
