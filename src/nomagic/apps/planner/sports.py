"""One mapping from the activity type words that exports and logs use to the planner's ``SPORTS``.

Strava's types come as "Run", "Trail Run", "VirtualRide", "E-Bike Ride", ... in exports of
different years; the words are compared without case, spaces, hyphens or underscores, so
"Virtual Ride", "VirtualRide" and "virtual_ride" are the same. Unknown words are "other"; the
importers keep the original word in ``Activity.kind``.
"""

from __future__ import annotations

import re

_GROUPS = {
    "run": ("run", "trailrun", "virtualrun", "treadmill", "treadmillrun", "running", "jog", "laufen", "lauf"),
    "ride": ("ride", "virtualride", "ebikeride", "gravelride", "mountainbikeride", "emountainbikeride",
             "velomobile", "handcycle", "cycling", "cycle", "bike", "biking", "indoorcycling", "radfahrt"),
    "swim": ("swim", "swimming", "openwaterswim", "poolswim", "schwimmen"),
    "walk": ("walk", "walking", "spaziergang", "gehen"),
    "hike": ("hike", "hiking", "wandern", "wanderung"),
    "strength": ("weighttraining", "crossfit", "strength", "strengthtraining", "weights", "gym",
                 "krafttraining"),
}
_SPORT_OF = {word: sport for sport, words in _GROUPS.items() for word in words}


def sport_of(kind: str) -> str:
    """The ``SPORTS`` word for an activity type word ("Trail Run" -> "run"; unknown -> "other")."""
    return _SPORT_OF.get(re.sub(r"[\s\-_]+", "", kind).lower(), "other")
