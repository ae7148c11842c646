from gemma_nb.stops import StopFilter


def feed(stops, pieces):
    f = StopFilter(stops)
    shown = "".join(f.push(p) for p in pieces)
    return shown + ("" if f.stopped else f.flush()), f.stopped


def test_text_is_cut_before_a_stop_string_split_over_pieces():
    assert feed(["\n\n"], ["Hello", "\n", "\nWorld"]) == ("Hello", True)


def test_held_back_prefix_is_released_when_no_stop_follows():
    f = StopFilter(["END"])
    assert f.push("the EN") == "the "
    assert f.push("D-GAME") == ""  # "END" completed: stop, nothing more shown
    assert f.stopped


def test_partial_prefix_released_at_the_end():
    assert feed(["END"], ["we are E"]) == ("we are E", False)


def test_no_stops_passes_everything():
    assert feed([], ["a", "b"]) == ("ab", False)
