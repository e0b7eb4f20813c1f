"""The rhythm and key measures of the evaluation (vampnet.eval.musical) on signals whose tempo and pitch classes
are known: click tracks at set tempi and triads of set notes."""
import numpy as np
import pytest

from vampnet.eval import musical

SR = 22050


def clicks(bpm: float, seconds: float = 8.0) -> np.ndarray:
    x = np.zeros(int(seconds * SR), dtype=np.float32)
    n = int(0.02 * SR)
    click = np.sin(2 * np.pi * 1000 * np.arange(n) / SR) * np.exp(-np.arange(n) / (0.003 * SR))
    for t in np.arange(0.25, seconds - 0.1, 60.0 / bpm):
        x[int(t * SR):int(t * SR) + n] += click.astype(np.float32)
    return x


def triad(root_midi: int, seconds: float = 2.0, gain: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    notes = (root_midi, root_midi + 4, root_midi + 7)  # a major triad
    return (gain * sum(np.sin(2 * np.pi * 440 * 2 ** ((m - 69) / 12) * t) for m in notes) / 3).astype(np.float32)


@pytest.mark.parametrize("ref,est,kept", [(120, 121, True), (120, 124.7, True), (120, 240, True), (120, 61, True),
                                          (120, 126, False), (120, 180, False), (120, 90, False), (0, 120, False)])
def test_tempo_agreement_allows_four_percent_and_octave_errors(ref, est, kept):
    assert musical.tempo_agrees(ref, est) is kept


@pytest.mark.parametrize("bpm", [100, 120, 140])
def test_the_tempo_of_a_click_track_is_found(bpm):
    assert musical.tempo_agrees(bpm, musical.tempo(clicks(bpm), SR))


@pytest.mark.parametrize("bpm", [84, 97, 111, 126, 133, 147.7, 158])
def test_a_click_tracks_tempo_is_found_within_one_and_a_half_percent(bpm):
    # finer than the 4 % agreement tolerance, so the measure's own rounding cannot decide agreement (with the
    # tracker's default 512-sample hop, 126-158 BPM came out 2.2-2.3 % off, and 147.7 an octave off)
    assert abs(musical.tempo(clicks(bpm, seconds=10.0), SR) / bpm - 1) < 0.015


def test_a_delay_of_the_same_music_keeps_its_tempo():
    x = clicks(141, seconds=10.0)
    for delay_s in (0.01, 0.05):
        assert musical.keeps_rhythm_and_key(x, np.roll(x, int(delay_s * SR)), SR)["tempo_kept"]


def test_click_tracks_of_other_tempi_disagree():
    result = musical.keeps_rhythm_and_key(clicks(120), clicks(100), SR)
    assert not result["tempo_kept"]
    assert musical.keeps_rhythm_and_key(clicks(120), 0.5 * clicks(120), SR)["tempo_kept"]


def test_chroma_similarity_is_one_for_the_same_chord_and_low_for_a_chord_a_tritone_away():
    c_major = triad(60)
    assert musical.chroma_similarity(c_major, triad(60, gain=0.1), SR) > 0.99
    assert musical.chroma_similarity(c_major, triad(72), SR) > 0.95  # an octave up: the same pitch classes
    assert musical.chroma_similarity(c_major, triad(66), SR) < 0.5   # F# major shares no pitch class with C major


def test_onset_correlation_is_one_for_the_same_transients_and_low_for_shifted_ones():
    x = clicks(120)
    assert musical.onset_correlation(x, 0.3 * x, SR) > 0.99
    shifted = np.roll(x, int(0.25 * SR))  # clicks half way between the beats
    assert musical.onset_correlation(x, shifted, SR) < 0.2
    assert musical.onset_correlation(x, np.zeros_like(x), SR) == 0.0
