"""A seeded generator of an athlete's training log over real daily weather.

Why: the planner needs a log to learn from and demonstrate on, and the recurrent model must be
shown to beat a feed-forward one where the past matters. So the log follows coaching rules that
mix the weather with the athlete's history, and every day records WHICH rule decided it.

The athlete (a male runner: hr_rest 60, hr_max 188, true values the log does not state) follows
a weekly plan, and each day the first rule below whose condition holds decides the day's class
(``rest``, ``easy``, ``long``, ``hard``):

1. ``two_hard_rest`` (history) — the two previous days were both hard: rest.
2. ``acwr_high`` (history) — yesterday's acute:chronic ratio ATL/C28 is above 1.3 and the plan
   is not rest: a planned hard or long day becomes easy, a planned easy day becomes rest.
3. ``cold_snap`` (weather) — the day's maximum is below 3 °C and the plan is not rest: rest
   (half the time) or a short easy indoor session (a ride on the trainer or weight training).
4. ``rain_no_hard`` (weather) — the plan is hard but it rains more than 8 mm or the wind is over
   7 m/s: no outdoor hard session; an easy indoor ride or an easy run instead.
4b. ``heat_easy`` (weather) — the plan is hard or long but the maximum is 25 °C or more: no hard
   effort and no long run in the heat; an easy session instead, and from 30 °C a rest day. With
   the cold snap this makes the chance of a hard day, and of a rest day, change direction with
   temperature — a shape no single weighted sum of the inputs can follow, and one reason a
   hidden layer helps.
5. ``acwr_low`` (history) — yesterday's ratio is below 0.8 and the plan is rest or easy: add
   load (rest becomes easy, easy becomes hard unless it rains over 8 mm or blows over 7 m/s).
6. ``rain_no_long`` (weather) — the plan is the weekend long run but it rains over 3 mm or the
   wind is over 7 m/s: an easy run instead.
7. ``weekend_long`` (weather) — Saturday's planned long run on a dry day (≤ 3 mm, wind ≤ 7 m/s).
8. ``long_moved`` (history) — a Sunday after a week with no long session, dry: the long run
   moves here.
9. ``weekly_plan`` — otherwise the plan holds. Weeks run Monday to Sunday in blocks of four:
   three building weeks (durations ×1.0, ×1.08, ×1.16), each drawn from three templates
   (drawn with chances 35, 35 and 30 %: ``A`` rest, hard, easy, hard, easy, long, easy; ``B`` rest,
   hard, hard, easy, easy, long,
   rest; ``C`` rest, easy, hard, easy, rest, long, easy), then a recovery week (rest, easy,
   rest, hard, easy, long, easy at ×0.75).
10. ``noise`` — on days decided by ``weekly_plan`` or ``weekend_long`` only (so no other rule's
    promise is broken): a random skip (5 %: rest) or a random swap (4 %: easy ↔ hard,
    rest → easy; only hard → easy on a stormy or hot day; a long run is not swapped).

The ratio uses the planner's own load (``load.session_load``, TRIMP where there is a heart rate)
with the exponential ATL (7 days) and C28 (28 days) of ``load.ewma_step``; the athlete arrives
trained, so both start at 55 per day rather than 0.

Sessions: runs mostly (easy 35–60 min, long 95–140 min, hard 45–75 min at 158–172 bpm or RPE
7–9), some easy and summer long rides, weight training after a third of the easy days and a
tenth of the hard days. About 10 % of runs and rides lack the heart rate (most weight training
does too) and about 10 % of sessions the RPE, so every load method gets used; a hard session
always keeps one of the two, so its class can be read back from the CSV with
``sessions.day_class``. Numbers are rounded to what the plain CSV holds (whole minutes,
10 m, whole bpm and RPE) so that the activities equal the CSV read back.

Run ``python -m nomagic.apps.planner.generator --seed 7 -o athlete-log.csv``; the shipped
``nomagic/data/athlete-log.csv`` is exactly that over the shipped Seattle weather but its last
day, 2015-12-31, which is left as "tomorrow": the day ``nomagic plan`` plans, its weather known.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nomagic.errors import InvalidInputError, NomagicError

from .load import LoadSettings, ewma_step, session_load
from .records import Activity, DailyWeather

RULES = ("two_hard_rest", "acwr_high", "cold_snap", "rain_no_hard", "heat_easy", "acwr_low", "rain_no_long",
         "weekend_long", "long_moved", "weekly_plan", "noise")
#: The rules whose condition looks at past days (the log's history), not only today.
HISTORY_RULES = ("two_hard_rest", "acwr_high", "acwr_low", "long_moved")

HR_REST, HR_MAX = 60.0, 188.0
ACWR_HIGH, ACWR_LOW = 1.3, 0.8
HEAVY_RAIN_MM, DRY_MM, STRONG_WIND_MS, COLD_C, HOT_C, SCORCHING_C = 8.0, 3.0, 7.0, 3.0, 25.0, 30.0
START_LOAD = 55.0
SKIP_P, SWAP_P = 0.05, 0.04

TEMPLATES = {  # Monday .. Sunday
    "A": ("rest", "hard", "easy", "hard", "easy", "long", "easy"),
    "B": ("rest", "hard", "hard", "easy", "easy", "long", "rest"),
    "C": ("rest", "easy", "hard", "easy", "rest", "long", "easy"),
}
TEMPLATE_P = {"A": 0.35, "B": 0.35, "C": 0.30}
RECOVERY = ("rest", "easy", "rest", "hard", "easy", "long", "easy")
BLOCK_SCALE = (1.0, 1.08, 1.16, 0.75)
SWAPS = {"easy": "hard", "hard": "easy", "rest": "easy"}  # a long run is skipped, never swapped

CSV_HEADER = "date,type,duration_min,distance_km,avg_hr,rpe"
KIND_SPORT = {"Run": "run", "Ride": "ride", "Weight Training": "strength"}


@dataclass(frozen=True, eq=False)
class GeneratedLog:
    """The generated sessions, and per weather day its class and the rule that decided it."""

    activities: tuple[Activity, ...]
    dates: np.ndarray
    classes: tuple[str, ...]
    decided_by: tuple[str, ...]
    seed: int

    history_rules = HISTORY_RULES


def _session(rng: np.random.Generator, day: dt.date, kind: str, minutes: float, pace: tuple[float, float] | None,
             hr: tuple[float, float], rpe: tuple[int, int], hr_missing: float, rpe_missing: float) -> Activity:
    """One session with values rounded as the plain CSV holds them. ``pace`` in km per minute."""
    minutes = float(round(minutes))
    distance = None
    if pace is not None:
        distance = float(round(minutes * rng.uniform(*pace) * 100)) * 10.0  # metres, to 10 m
    avg_hr = float(round(rng.uniform(*hr)))
    effort = float(rng.integers(rpe[0], rpe[1] + 1))
    drop_hr = rng.random() < hr_missing
    drop_rpe = rng.random() < rpe_missing
    return Activity(date=day, sport=KIND_SPORT[kind], duration_s=minutes * 60.0, kind=kind, distance_m=distance,
                    avg_hr=None if drop_hr else avg_hr, rpe=None if drop_rpe else effort)


def _sessions(rng: np.random.Generator, day: dt.date, cls: str, scale: float, indoor: bool) -> list[Activity]:
    """The sessions of a day of class ``cls``; ``indoor`` for cold or stormy days."""
    if cls == "rest":
        return []
    run_pace = {"easy": (1 / 6.0, 1 / 5.3), "long": (1 / 6.1, 1 / 5.4), "hard": (1 / 5.0, 1 / 4.4)}
    if cls == "easy":
        if indoor and rng.random() < 0.4:
            return [_session(rng, day, "Weight Training", rng.uniform(30, 45), None, (100, 125), (4, 6), 0.6, 0.1)]
        if indoor or rng.random() < 0.2:
            acts = [_session(rng, day, "Ride", rng.uniform(45, 80) * scale, (24 / 60, 28 / 60), (118, 135), (2, 4),
                             0.1, 0.12)]
        else:
            acts = [_session(rng, day, "Run", min(rng.uniform(35, 60) * scale, 75), run_pace["easy"], (128, 142),
                             (2, 4), 0.1, 0.12)]
        if not indoor and rng.random() < 1 / 3:
            acts.append(_session(rng, day, "Weight Training", rng.uniform(30, 45), None, (100, 125), (4, 6), 0.6, 0.1))
        return acts
    if cls == "long":
        if day.month in (5, 6, 7, 8, 9) and rng.random() < 0.25:
            return [_session(rng, day, "Ride", rng.uniform(150, 240) * max(scale, 1.0), (25 / 60, 29 / 60), (125, 140),
                             (4, 6), 0.1, 0.12)]
        return [_session(rng, day, "Run", max(rng.uniform(95, 140) * scale, 92), run_pace["long"], (133, 145), (4, 6),
                         0.1, 0.12)]
    hard = _session(rng, day, "Run", rng.uniform(45, 75) * scale, run_pace["hard"], (158, 172), (7, 9), 0.1, 0.0)
    if hard.avg_hr is not None and rng.random() < 0.12:  # keep one of heart rate and RPE
        hard = Activity(date=hard.date, sport=hard.sport, duration_s=hard.duration_s, kind=hard.kind,
                        distance_m=hard.distance_m, avg_hr=hard.avg_hr, rpe=None)
    acts = [hard]
    if rng.random() < 0.1:
        acts.append(_session(rng, day, "Weight Training", rng.uniform(30, 40), None, (100, 125), (4, 6), 0.6, 0.1))
    return acts


def generate(weather: DailyWeather, seed: int = 7) -> GeneratedLog:
    """The log over every day of ``weather``, decided by the rules of the module docstring."""
    if not len(weather):
        raise InvalidInputError("the weather has no days to generate a log over")
    rng = np.random.default_rng(seed)
    settings = LoadSettings(hr_rest=HR_REST, hr_max=HR_MAX)
    atl = chronic = START_LOAD
    activities: list[Activity] = []
    classes: list[str] = []
    decided: list[str] = []
    template, scale, week_has_long = TEMPLATES["A"], 1.0, False
    names = list(TEMPLATES)
    probs = [TEMPLATE_P[k] for k in names]
    first = weather.dates[0].astype(dt.date)
    for i, day64 in enumerate(weather.dates):
        day = day64.astype(dt.date)
        weekday = day.weekday()
        if weekday == 0 or i == 0:
            block_week = ((day - first).days // 7) % 4
            scale = BLOCK_SCALE[block_week]
            template = RECOVERY if block_week == 3 else TEMPLATES[names[rng.choice(len(names), p=probs)]]
            week_has_long = False
        plan = template[weekday]
        rain, wind, tmax = weather.precipitation[i], weather.wind[i], weather.temp_max[i]
        stormy = bool(rain > HEAVY_RAIN_MM or wind > STRONG_WIND_MS)
        dry = bool(rain <= DRY_MM and wind <= STRONG_WIND_MS)
        hot = bool(tmax >= HOT_C)
        acwr = atl / chronic if chronic > 0 else 1.0
        indoor = False
        if len(classes) >= 2 and classes[-1] == classes[-2] == "hard":
            cls, rule = "rest", "two_hard_rest"
        elif acwr > ACWR_HIGH and plan != "rest":
            cls, rule = ("rest" if plan == "easy" else "easy"), "acwr_high"
        elif tmax < COLD_C and plan != "rest":
            cls, rule, indoor = ("rest" if rng.random() < 0.5 else "easy"), "cold_snap", True
        elif plan == "hard" and stormy:
            cls, rule, indoor = "easy", "rain_no_hard", rng.random() < 0.5
        elif plan in ("hard", "long") and hot:
            cls, rule = ("rest" if tmax >= SCORCHING_C else "easy"), "heat_easy"
        elif acwr < ACWR_LOW and plan in ("rest", "easy") and not (plan == "easy" and stormy):
            cls, rule = ("easy" if plan == "rest" else "hard"), "acwr_low"
        elif plan == "long" and not dry:
            cls, rule = "easy", "rain_no_long"
        elif plan == "long":
            cls, rule = "long", "weekend_long"
        elif weekday == 6 and not week_has_long and dry:
            cls, rule = "long", "long_moved"
        else:
            cls, rule = plan, "weekly_plan"
        if rule in ("weekly_plan", "weekend_long"):
            u = rng.random()
            if u < SKIP_P and cls != "rest":
                cls, rule = "rest", "noise"
            elif SKIP_P <= u < SKIP_P + SWAP_P and cls in SWAPS and not ((stormy or hot) and cls != "hard"):
                cls, rule = SWAPS[cls], "noise"
        today = _sessions(rng, day, cls, scale, indoor)
        load = sum(session_load(a, settings, HR_MAX)[0] for a in today)
        atl, chronic = ewma_step(atl, load, settings.atl_days), ewma_step(chronic, load, settings.chronic_days)
        week_has_long = week_has_long or cls == "long"
        activities.extend(today)
        classes.append(cls)
        decided.append(rule)
    return GeneratedLog(tuple(activities), np.array(weather.dates, dtype="datetime64[D]"), tuple(classes),
                        tuple(decided), seed)


def _number(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def to_csv(activities: Sequence[Activity]) -> str:
    """The plain-CSV text of a log: ``date,type,duration_min,distance_km,avg_hr,rpe``, empty where unknown."""
    lines = [CSV_HEADER]
    for a in activities:
        km = None if a.distance_m is None else a.distance_m / 1000.0
        lines.append(",".join([a.date.isoformat(), a.kind, _number(a.duration_s / 60.0, 0), _number(km, 2),
                               _number(a.avg_hr, 0), _number(a.rpe, 0)]))
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m nomagic.apps.planner.generator --seed 7 -o FILE`` (``-o -`` writes to stdout)."""
    from nomagic.io import atomic_write_bytes

    from .shipped import log_weather

    parser = argparse.ArgumentParser(prog="python -m nomagic.apps.planner.generator",
                                     description="Write the generated athlete log over Seattle's weather as CSV.")
    parser.add_argument("--seed", type=int, default=7, help="random seed (the shipped log uses 7)")
    parser.add_argument("-o", "--output", default="-", help="CSV file to write, '-' for stdout")
    args = parser.parse_args(argv)
    text = to_csv(generate(log_weather(), args.seed).activities)
    try:
        if args.output == "-":
            sys.stdout.write(text)
        else:
            atomic_write_bytes(args.output, text.encode("utf-8"))
    except NomagicError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
