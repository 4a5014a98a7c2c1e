"""Plain-python reference of the beat position used by the targets and metrics tests."""


def reference_position(x: float, beats) -> float:
    """The beat position of time ``x`` on the grid ``beats`` (increasing, >= 2 beats): linear
    between beats, extended with the first and last interval outside them."""
    if x < beats[0]:
        return (x - beats[0]) / (beats[1] - beats[0])
    if x > beats[-1]:
        return len(beats) - 1 + (x - beats[-1]) / (beats[-1] - beats[-2])
    for i in range(len(beats) - 1):
        if beats[i] <= x <= beats[i + 1]:
            return i + (x - beats[i]) / (beats[i + 1] - beats[i])
    raise AssertionError("unreachable")
