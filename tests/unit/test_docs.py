from conveyor.control.docs import main


def test_generated_docs_are_current() -> None:
    """docs/task-file.md and docs/type-mappings.md come from the code; regenerate them with
    ``python -m conveyor.control.docs`` when this fails."""
    assert main(["--check"]) == 0
