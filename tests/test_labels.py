import pytest

from emotion.labels import FER2013_CLASSES, UnknownClassError, canonical_name, class_index


def test_canonical_order_is_the_csv_order():
    assert FER2013_CLASSES == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


@pytest.mark.parametrize(
    ("folder", "index"),
    [("angry", 0), ("Disgust", 1), ("FEAR", 2), ("happy", 3), ("Sad", 4), ("surprised", 5), ("neutral", 6)],
)
def test_folder_names_map_by_name_not_alphabetical_position(folder, index):
    assert class_index(folder) == index


def test_unknown_class_lists_the_accepted_names():
    with pytest.raises(UnknownClassError) as err:
        canonical_name("contempt")
    assert "contempt" in str(err.value)
    for name in FER2013_CLASSES:
        assert name in str(err.value)
