"""The ``nomagic`` command line. Errors print one line on stderr and exit non-zero."""

from __future__ import annotations

import argparse
import os
import sys

from .errors import NomagicError


def _digits(args: argparse.Namespace) -> int:
    from . import fit
    from .data.digits import digits_network, load_digits_split
    from .train import optimizers

    if args.plot:  # a bad picture name fails now, not after training
        from .apps.figures import check_figure_path

        check_figure_path(args.plot, "plot")
    data = load_digits_split(seed=args.seed)
    net = digits_network()
    print(f"training {net} on {len(data.X_train)} digits ({args.engine} engine)")
    model = fit(net, data.X_train, data.y_train, loss="cross_entropy",
                optimizer=optimizers.adam(args.lr), epochs=args.epochs, batch_size=args.batch_size,
                seed=args.seed, engine=args.engine, validation_split=0.1, verbose=args.progress)
    scores = model.evaluate(data.X_test, data.y_test)
    last = model.history[-1]
    print(f"epochs {last['epoch']}  train loss {last['loss']:.4f}  "
          f"validation accuracy {last.get('val_accuracy', float('nan')):.4f}")
    print(f"test accuracy {scores['accuracy']:.4f} on {len(data.X_test)} held-out digits")
    if args.save:
        model.save(args.save)
        print(f"saved the model to {args.save}")
    if args.plot:
        from .apps.draw import draw_history

        draw_history(model.history, args.plot, title="digits: loss and accuracy per epoch")
        print(f"drew the loss curves to {args.plot}")
    return 0


def _draw(args: argparse.Namespace) -> int:
    from .apps.draw import draw_network, draw_unrolled
    from .apps.figures import check_figure_path
    from .train.model import load

    check_figure_path(args.output)  # before reading anything: a bad name writes nothing
    model = load(args.model)
    title = f"{os.path.basename(args.model)}: {model.net!r}"
    if args.unroll is not None:
        draw_unrolled(model.net, model.params, steps=args.unroll, path=args.output, title=title)
    else:
        draw_network(model.net, model.params, path=args.output, title=title)
    print(f"drew {model.net!r} to {args.output}")
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError(f"{text!r} must be a whole number from 1 to 64")
    return value


def _add_draw(sub) -> None:
    p = sub.add_parser(
        "draw", help="draw a saved model's neurons and synapses to a .png or .svg",
        description="Read a .nomagic model file and draw its network: neurons by depth, synapses blue (positive "
                    "weight) or orange (negative), thicker the larger |w|, recurrent synapses dashed, product "
                    "neurons marked with x, the bias as the neuron's fill. Bad input is one line on stderr and "
                    "exit status 2, and nothing is written.")
    p.add_argument("model", metavar="MODEL", help="a model file written by Model.save or nomagic digits --save")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="the picture to write (.png or .svg)")
    p.add_argument("--unroll", type=_positive_int, metavar="N",
                   help="draw a recurrent network unrolled over N time steps instead")
    p.set_defaults(func=_draw)


def _load(args: argparse.Namespace) -> int:
    from .apps.planner.loadcmd import run_load

    result = run_load(args.log, as_json=args.json, plot=args.plot, method=args.load, hr_rest=args.hr_rest,
                      hr_max=args.hr_max, sex=args.sex, ctl_days=args.ctl_days, atl_days=args.atl_days,
                      start=args.start, end=args.end)
    for note in result.notes:
        print(f"nomagic: {note}", file=sys.stderr)
    sys.stdout.write(result.output)
    sys.stdout.flush()
    return 0


def _date(text: str):
    import datetime as dt

    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2015-12-31") from None


def _positive(text: str) -> float:
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number")
    return value


def _add_load(sub) -> None:
    p = sub.add_parser(
        "load", help="print the training-load table (load, CTL, ATL, TSB, ACWR, monotony, strain) of a log",
        description="Read a training log (a Strava export: the .zip, its unpacked folder or its activities.csv; or "
                    "the plain CSV date,type,duration_min,distance_km[,avg_hr][,rpe]) and print the training load "
                    "per day: load, fitness (CTL), fatigue (ATL), form (TSB), acute:chronic ratio (ACWR), "
                    "monotony and strain. Bad input is one line on stderr and exit status 2.")
    p.add_argument("--log", metavar="FILE", help="the training log (default: the log shipped with nomagic, "
                                                   "nomagic/data/athlete-log.csv)")
    p.add_argument("--json", action="store_true", help="print a JSON list of objects (date, load, ctl, atl, tsb, "
                                                        "acwr, monotony, strain; null where undefined) instead")
    p.add_argument("--plot", metavar="FILE", help="also draw the performance-management chart to FILE (.png or .svg; "
                                                   "needs matplotlib)")
    p.add_argument("--load", choices=("auto", "trimp", "srpe", "duration"), default="auto",
                   help="the load per session (default: auto = TRIMP where a session has heart rate, else sRPE "
                        "where it has an RPE, else minutes x a factor per session class)")
    p.add_argument("--hr-rest", type=float, metavar="N", help="resting heart rate for TRIMP (default: 60)")
    p.add_argument("--hr-max", type=float, metavar="N", help="maximum heart rate for TRIMP (default: the highest "
                                                              "heart rate in the log)")
    p.add_argument("--sex", choices=("male", "female"), default="male",
                   help="TRIMP's weighting (default: male, k=1.92; female k=1.67)")
    p.add_argument("--ctl-days", type=_positive, default=42.0, metavar="N",
                   help="time constant of fitness, CTL (default: 42)")
    p.add_argument("--atl-days", type=_positive, default=7.0, metavar="N",
                   help="time constant of fatigue, ATL (default: 7)")
    p.add_argument("--from", dest="start", type=_date, metavar="DATE",
                   help="first day to show, YYYY-MM-DD (default: the log's first day; the load is always "
                        "computed over the whole log)")
    p.add_argument("--to", dest="end", type=_date, metavar="DATE",
                   help="last day to show, YYYY-MM-DD (default: the log's last day; later adds rest days)")
    p.set_defaults(func=_load)


def _print(result) -> int:
    for note in result.notes:
        print(f"nomagic: {note}", file=sys.stderr)
    sys.stdout.write(result.output)
    sys.stdout.flush()
    return 0


def _plan(args: argparse.Namespace) -> int:
    from .apps.planner.plancmd import run_plan

    return _print(run_plan(args.log, args.weather, forecast=args.forecast, date=args.date, days=args.days,
                           model=args.model, engine=args.engine, plot=args.plot, as_json=args.json,
                           method=args.load, hr_rest=args.hr_rest, hr_max=args.hr_max, sex=args.sex))


def _audit(args: argparse.Namespace) -> int:
    from .apps.planner.plancmd import run_audit

    return _print(run_audit(args.log, args.weather, forecast=args.forecast, model=args.model, engine=args.engine,
                            as_json=args.json, method=args.load, hr_rest=args.hr_rest, hr_max=args.hr_max,
                            sex=args.sex))


def _planner_inputs(p, what: str) -> None:
    p.add_argument("--log", metavar="FILE", help="the training log: a Strava export (the .zip, its folder or its "
                                                   "activities.csv) or the plain CSV date,type,duration_min,"
                                                   "distance_km[,avg_hr][,rpe] (default: the shipped log, which "
                                                   "is generated: see the README)")
    p.add_argument("--weather", metavar="FILE", help="daily weather over the log's days: Meteostat CSV (with or "
                                                       "without header), Open-Meteo CSV export, or the Seattle "
                                                       "format (default: the shipped Seattle weather 2012-2015)")
    p.add_argument("--forecast", metavar="FILE", help=f"weather for the days {what} (same formats); days no file "
                                                        "covers have unknown weather")
    p.add_argument("--model", choices=("perceptron", "mlp", "rnn"), default="mlp",
                   help="perceptron (train or rest?), mlp (multi-layer network) or rnn (recurrent network over "
                        "the last 3 weeks); default mlp")
    p.add_argument("--engine", choices=("tensor", "processes"), default="tensor",
                   help="the engine that runs the trained networks (training uses the tensor engine)")
    p.add_argument("--json", action="store_true", help="print JSON (schema: nomagic/apps/planner/*.schema.json)")
    p.add_argument("--load", choices=("auto", "trimp", "srpe", "duration"), default="auto",
                   help="the load per session (default auto: TRIMP, else sRPE, else duration)")
    p.add_argument("--hr-rest", type=float, metavar="N", help="resting heart rate for TRIMP (default: 60)")
    p.add_argument("--hr-max", type=float, metavar="N", help="maximum heart rate (default: the log's highest)")
    p.add_argument("--sex", choices=("male", "female"), default="male", help="TRIMP's weighting (default: male)")


def _add_plan(sub) -> None:
    p = sub.add_parser(
        "plan", help="recommend the next session (rest, easy, long or hard), with reasons and warnings",
        description="Train a perceptron, a multi-layer network and a recurrent network on a training log and the "
                    "weather (or reuse them from the cache), and recommend the session for the day after the log, "
                    "with each class's probability, the load picture, the inputs that pushed hardest and the "
                    "bias audit's warnings. Bad input is one line on stderr and exit status 2.")
    _planner_inputs(p, "being planned")
    p.add_argument("--date", type=_date, metavar="DATE", help="the day to plan, YYYY-MM-DD (default: the day after "
                                                               "the last logged day)")
    p.add_argument("--days", type=int, default=1, metavar="N", help="plan N days (1-28), rolling the load forward "
                                                                     "with each recommended session")
    p.add_argument("--plot", metavar="FILE", help="draw the performance-management chart with the plan (.png/.svg)")
    p.set_defaults(func=_plan)
    p = sub.add_parser(
        "audit", help="say where the training data is thin or lopsided",
        description="Class balance, how well the training data covers each weather condition, temperature band, "
                    "season and weekday, the model's accuracy on each kind of day of the hold-out year, and the "
                    "shift between a forecast and the weather the model learned from, with plain warnings.")
    _planner_inputs(p, "you ask about")
    p.set_defaults(func=_audit)


def _tour(args: argparse.Namespace) -> int:
    from .apps.tour.run import main as tour_main

    return tour_main(args.chapter, list_only=args.list, pause=not args.no_pause)


def _add_tour(sub) -> None:
    p = sub.add_parser(
        "tour", help="the talk nomagic grew from, as chapters you run: one neuron up to neurons as processes",
        description="Run the tour's chapters in order, or one of them: the text, the code and what the code "
                    "computes. Between chapters it waits for Enter (not with --no-pause, nor when standard input "
                    "is not a terminal). The same chapters ship as notebooks in nomagic/apps/tour/notebooks. "
                    "Needs rich: pip install 'nomagic[tour]'.")
    p.add_argument("chapter", nargs="?", help="one chapter, by number or short name (see --list); default: all")
    p.add_argument("--list", action="store_true", help="list the chapters and exit")
    p.add_argument("--no-pause", action="store_true", help="do not wait for Enter between chapters")
    p.set_defaults(func=_tour)


def _playground(args: argparse.Namespace) -> int:
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        print("nomagic: the playground needs its extra: pip install 'nomagic[playground]'", file=sys.stderr)
        return 2
    import socket

    from .apps.playground.server import make_server

    try:  # say a taken port in one line, before uvicorn says it in a log
        family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
        with socket.socket(family) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            probe.bind((args.host, args.port))
    except OSError as exc:
        print(f"nomagic: error: cannot serve on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    server = make_server(args.host, args.port)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"nomagic playground: open http://{shown}:{args.port}/ (Ctrl-C stops it)", flush=True)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"nomagic: warning: bound to {args.host}: other machines can reach the playground", file=sys.stderr)
    try:
        server.run()
    except (KeyboardInterrupt, SystemExit):
        pass
    if not server.started:
        print(f"nomagic: error: could not serve on {args.host}:{args.port}", file=sys.stderr)
        return 2
    print("nomagic playground: stopped", file=sys.stderr)
    return 0


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1-65535)")
    return value


def _add_playground(sub) -> None:
    p = sub.add_parser("playground", help="a local web page that trains a network live (like TensorFlow Playground)",
                       description="Serve the playground: a web page that trains a small network live on the "
                                   "tensor or the processes engine. Bound to 127.0.0.1 unless --host says otherwise.")
    p.add_argument("--host", default="127.0.0.1",
                   help="the address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=_port, default=8765, help="the port (default 8765)")
    p.set_defaults(func=_playground)


def _bench(args: argparse.Namespace) -> int:
    from .apps import bench

    return bench.main(args.rest)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (``nomagic: error: ...``)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from .version import __version__

    parser = _Parser(prog="nomagic", description="Deep learning with no magic.")
    parser.add_argument("--version", action="version", version=f"nomagic {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("digits", help="train a 64-128-128-10 network on the digits data and "
                                      "print its test accuracy")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--engine", default="tensor")
    p.add_argument("--save", metavar="FILE", help="save the trained model")
    p.add_argument("--plot", metavar="FILE", help="draw the loss and accuracy curves (.png or .svg; needs matplotlib)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="show progress bars (default: when on a terminal)")
    p.set_defaults(func=_digits)

    p = sub.add_parser("bench", help="run the benchmarks and print the comparison table",
                       add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=_bench)

    _add_draw(sub)
    _add_plan(sub)
    _add_load(sub)
    _add_tour(sub)
    _add_playground(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "bench":  # its options are the benchmark runner's own
        from .apps import bench

        try:
            return int(bench.main(argv[1:]) or 0)
        except NomagicError as exc:
            print(f"nomagic: error: {exc}", file=sys.stderr)
            return 1
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except NomagicError as exc:
        print(f"nomagic: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nomagic: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a bug of ours: one line, the traceback only when asked for
        if os.environ.get("NOMAGIC_DEBUG"):
            raise
        print(f"nomagic: internal error: {type(exc).__name__}: {exc} (a bug in nomagic: please report it; "
              "NOMAGIC_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
