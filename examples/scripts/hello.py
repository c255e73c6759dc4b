def main(name: str = "world") -> str:
    """Say hello.

    Args:
        name: who to greet
    """
    return f"Hello {name}"
