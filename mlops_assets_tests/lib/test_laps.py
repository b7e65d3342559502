import time

from mlops_assets.lib.laps import Laps


def test_laps_add_up_to_the_total_and_a_repeated_name_accumulates():
    laps = Laps()
    time.sleep(0.02)
    laps.lap("read")
    time.sleep(0.01)
    laps.lap("compute")
    time.sleep(0.01)
    laps.lap("read")
    seconds = laps.seconds()
    assert list(seconds) == ["read", "compute", "total"]
    assert seconds["read"] >= 0.03 and seconds["compute"] >= 0.01
    assert abs(seconds["read"] + seconds["compute"] - seconds["total"]) <= 0.002
