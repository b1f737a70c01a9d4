"""The one exception type of the layout system."""


class LayoutError(ValueError):
    """A layout cannot be built or an operation on layouts is undefined (the message says why)."""


class LayoutParseError(LayoutError):
    """A layout expression string is malformed (the message shows where)."""
