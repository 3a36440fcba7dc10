from urllib.parse import unquote, unquote_plus

import numpy as np
import pytest

from emotion.labels import FER2013_CLASSES
from emotion.songs import CatalogError, load_catalog, recommend, target_for
from emotion.songs.__main__ import main as songs_main


@pytest.mark.parametrize("emotion", FER2013_CLASSES)
@pytest.mark.parametrize("strategy", ["match", "lift"])
def test_every_emotion_yields_n_distinct_songs_with_distinct_artists(emotion, strategy):
    songs = recommend(emotion, n=8, strategy=strategy, seed=1)
    assert len(songs) == 8
    assert len({s.title for s in songs}) == 8
    assert len({s.artist.lower() for s in songs}) == 8


def test_same_seed_same_list_other_seed_may_differ():
    a = recommend("sad", n=6, seed=3)
    assert a == recommend("sad", n=6, seed=3)
    assert any(recommend("sad", n=6, seed=s) != a for s in range(4, 10))


def test_match_mirrors_the_mood_and_lift_moves_toward_positive_valence():
    sad = recommend("sad", n=6, strategy="match", candidates=1)
    happy = recommend("happy", n=6, strategy="match", candidates=1)
    assert np.mean([s.valence for s in sad]) < 0.35 < 0.7 < np.mean([s.valence for s in happy])
    lift = recommend("sad", n=6, strategy="lift", candidates=1)
    assert lift[0].valence < 0.4 and lift[-1].valence > 0.7


def test_probability_vector_targets_are_weighted():
    probs = np.zeros(7)
    probs[FER2013_CLASSES.index("happy")] = 1
    assert np.allclose(target_for(probs), target_for("happy"))
    mixed = target_for(np.full(7, 1 / 7))
    assert 0 < mixed[0] < 1


def test_links_are_url_encoded():
    song = next(s for s in load_catalog().songs if "&" in s.artist or "'" in s.title)
    for url in (song.spotify_url, song.youtube_url):
        assert " " not in url and "&" not in url.split("?", 1)[-1].split("=", 1)[-1]
    assert unquote(song.spotify_url.rsplit("/", 1)[1]) == song.query
    assert unquote_plus(song.youtube_url.split("search_query=")[1]) == song.query


def test_spotify_export_style_catalog_with_bad_rows_counted(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text(
        "track_name,artists,valence,energy,tempo\n"
        "Song A,['Band A'],0.9,0.8,120\n"
        "Song B,Band B;Guest,0.2,0.2,80\n"
        "Song C,Band C,not-a-number,0.5,100\n"
        "Song D,Band D,1.7,0.5,100\n"
    )
    cat = load_catalog(path)
    assert [(s.title, s.artist) for s in cat.songs] == [("Song A", "Band A"), ("Song B", "Band B")]
    assert [line for line, _ in cat.skipped] == [4, 5]
    assert recommend("happy", n=1, catalog=cat, candidates=1)[0].title == "Song A"


def test_catalog_without_needed_columns_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("title,artist,energy\nX,Y,0.5\n")
    with pytest.raises(CatalogError, match="no 'valence' column"):
        load_catalog(path)


def test_cli_takes_the_emotion_in_any_case(capsys):
    """A user who types --emotion Happy means happy (argparse's choices alone refused it)."""
    assert songs_main(["--emotion", "Happy", "-n", "2"]) == 0
    assert "Songs for happy" in capsys.readouterr().out


def test_cli(capsys, tmp_path):
    assert songs_main(["--emotion", "fear", "-n", "3", "--strategy", "lift"]) == 0
    out = capsys.readouterr().out
    assert out.count("https://open.spotify.com/search/") == 3
    assert songs_main(["--emotion", "happy", "--catalog", str(tmp_path / "none.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err
    photo = tmp_path / "photo.png"  # a file that is not text: named, with what to give instead
    photo.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    assert songs_main(["--emotion", "happy", "--catalog", str(photo)]) == 2
    err = capsys.readouterr().err
    assert f"error: catalog {photo} is not UTF-8 text (byte 0x89 at offset 0): give a CSV" in err
    latin1 = tmp_path / "latin1.csv"  # an Excel export in the Windows code page
    latin1.write_bytes("title,artist,valence,energy\nCaf\u00e9,B\u00e9b\u00e9,0.5,0.5\n".encode("cp1252"))
    assert songs_main(["--emotion", "happy", "--catalog", str(latin1)]) == 2
    assert "saved as UTF-8" in capsys.readouterr().err
