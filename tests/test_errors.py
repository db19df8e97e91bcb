"""labkit.errors.one_line: the one line every user-facing error message is cut to."""

from labkit.errors import one_line


def test_a_message_of_several_lines_gives_its_first():
    assert one_line(ValueError("batch_size must be >= 1\n  details the user does not need")) == "batch_size must be >= 1"


def test_an_empty_message_gives_the_name_of_the_error():
    assert one_line(KeyboardInterrupt()) == "KeyboardInterrupt"


def test_with_its_type_the_line_says_what_kind_of_failure_it_was():
    assert one_line(RuntimeError("CUDA error: device-side assert\nmore"), with_type=True) == (
        "RuntimeError: CUDA error: device-side assert")
    assert one_line(RuntimeError(), with_type=True) == "RuntimeError"
