"""Hand-picked references (004 4.2): the pool classes a person maps to each built-in target, kept in one place.

A study arm of these classes (``references: [{name: hand-picked, classes: hand-picked:cifar10}]``) separates "relevance
does not pay at this scale" from "the scorer does not find it": it is what a person who knows both label sets would
pick, at no scoring cost. WordNet ids of the tiny-imagenet-200 pool (ImageNet synsets, so they name the same classes
in any ImageNet-derived pool); the comment gives each one's first word.
"""

from __future__ import annotations

from ..errors import ThresherError

#: target name -> the tiny-imagenet-200 classes a person maps to it
HAND_PICKED: dict[str, list[str]] = {
    # cifar10: airplane, automobile, bird, cat, deer, dog, frog, horse, ship, truck (the pool has no plane or horse)
    "cifar10": [
        "n01641577",  # bullfrog
        "n01644900",  # tailed frog
        "n01855672",  # goose
        "n02002724",  # black stork
        "n02056570",  # king penguin
        "n02058221",  # albatross
        "n02085620",  # Chihuahua
        "n02094433",  # Yorkshire terrier
        "n02099601",  # golden retriever
        "n02099712",  # Labrador retriever
        "n02106662",  # German shepherd
        "n02113799",  # standard poodle
        "n02123045",  # tabby
        "n02123394",  # Persian cat
        "n02124075",  # Egyptian cat
        "n02423022",  # gazelle
        "n02814533",  # beach wagon
        "n03100240",  # convertible
        "n03447447",  # gondola
        "n03662601",  # lifeboat
        "n03670208",  # limousine
        "n03796401",  # moving van
        "n03977966",  # police van
        "n04285008",  # sports car
        "n04465501",  # tractor
    ],
    # fashion-mnist: T-shirt, trouser, pullover, dress, coat, sandal, shirt, sneaker, bag, ankle boot
    "fashion-mnist": [
        "n02669723",  # academic gown
        "n02730930",  # apron
        "n02769748",  # backpack
        "n02837789",  # bikini
        "n02963159",  # cardigan
        "n03026506",  # Christmas stocking
        "n03404251",  # fur coat
        "n03617480",  # kimono
        "n03763968",  # military uniform
        "n03770439",  # miniskirt
        "n03980874",  # poncho
        "n04133789",  # sandal
        "n04254777",  # sock
        "n04371430",  # swimming trunks
        "n04532106",  # vestment
    ],
}

PREFIX = "hand-picked:"


def hand_picked(spec: str, class_names: list[str] | None) -> list[int]:
    """``hand-picked:TARGET`` -> the label ids of that target's classes in a pool named by ``class_names`` (a pool of
    several sources names them ``SOURCE/wnid``); classes the pool lacks are skipped, none at all is an error."""
    name = spec.removeprefix(PREFIX)
    if name not in HAND_PICKED:
        raise ThresherError(f"no hand-picked classes for {name!r} (known: {', '.join(HAND_PICKED)})")
    wanted = set(HAND_PICKED[name])
    ids = [i for i, c in enumerate(class_names or []) if c in wanted or c.split("/", 1)[-1] in wanted]
    if not ids:
        raise ThresherError(f"the pool has none of the hand-picked classes of {name} (tiny-imagenet-200 WordNet ids)")
    return ids
