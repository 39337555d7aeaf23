# Kernel-side half of the bridge. This file is NEVER imported by the grader: its text is
# sent to the student's kernel as code, once per kernel, and installed there under a random
# name, bound to the protocol's limits (gradekit/bridge/protocol.py, SHIM_LIMITS); each
# request is then one call of it. A student who finds and overwrites it only changes their
# own replies, which the trusted side decodes strictly as data. Requests whose op starts with
# "torch." go to `torch_op`, the function of shim_torch.py (sent with this text, bound here).
def _gradekit_request(_request_json, limits, torch_op=None):
    import base64, io, json, math, traceback
    MIME, MAX_DEPTH, REPR = limits["mime"], limits["max_depth"], limits["repr_chars"]
    ip = get_ipython()  # noqa: F821 - defined in IPython kernels
    ns = ip.user_ns
    publish = ip.display_pub.publish
    request = json.loads(_request_json)
    token = request["token"]
    try:
        import numpy as np
    except Exception:
        np = None
    torch = None
    import sys
    if "torch" in sys.modules:
        torch = sys.modules["torch"]

    def encode(x, depth=0):
        if depth > MAX_DEPTH:
            raise ValueError(f"the value is nested more than {MAX_DEPTH} levels deep")
        if x is None or x is True or x is False:
            return x
        if isinstance(x, str):
            return str(x)
        if isinstance(x, bool):
            return bool(x)
        if isinstance(x, int):
            v = int(x)
            return v if -2**63 <= v < 2**63 else {"__bigint__": str(v)}
        if isinstance(x, float):
            v = float(x)
            return v if math.isfinite(v) else {"__float__": repr(v)}
        if x is Ellipsis:
            return {"__unsupported__": "ellipsis", "repr": "..."}
        if np is not None and isinstance(x, np.generic) and not isinstance(x, (np.void, np.object_)):
            if isinstance(x, np.complexfloating):
                return {"__unsupported__": "complex", "repr": repr(x)[:REPR]}
            return encode(x.item(), depth + 1)
        if torch is not None and isinstance(x, torch.Tensor):
            t = x.detach().cpu()
            if t.dtype in (torch.bfloat16, torch.float16):
                t = t.float()
            return {"__ndarray__": npy(t.numpy()), "torch": True, "torch_dtype": str(x.dtype),
                    "requires_grad": bool(x.requires_grad), "device": str(x.device)}
        if np is not None and isinstance(x, np.ndarray):
            if x.dtype.hasobject or x.dtype.fields is not None:
                return {"__unsupported__": "object array", "repr": repr(x)[:REPR]}
            return {"__ndarray__": npy(x)}
        if torch is not None and isinstance(x, torch.nn.Module):
            params = [[n, list(p.shape), bool(p.requires_grad)] for n, p in x.named_parameters()]
            buffers = [[n, list(b.shape)] for n, b in x.named_buffers()]
            children = [[n, type(m).__name__] for n, m in x.named_modules() if n]
            return {"__module__": {"class": type(x).__name__, "parameters": params, "buffers": buffers,
                                   "modules": children, "training": bool(x.training), "repr": repr(x)[:limits["module_repr_chars"]]}}
        pd = sys.modules.get("pandas")  # a table the student made with pandas: its rows, as a list of dicts
        if pd is not None and isinstance(x, pd.DataFrame):
            try:
                records = x.to_dict("records")
            except Exception:
                return {"__unsupported__": "pandas.DataFrame that to_dict cannot read", "repr": repr(x)[:REPR]}
            return encode(records, depth + 1)
        if isinstance(x, tuple):
            return {"__tuple__": [encode(v, depth + 1) for v in x]}
        if isinstance(x, list):
            return [encode(v, depth + 1) for v in x]
        if isinstance(x, dict):
            items = []
            for k, v in x.items():
                if not isinstance(k, (str, int)):
                    return {"__unsupported__": "dict with keys of type " + type(k).__name__, "repr": repr(x)[:REPR]}
                items.append([encode(k, depth + 1), encode(v, depth + 1)])
            return {"__dict__": items}
        try:
            shown = repr(x)[:REPR]
        except Exception:
            shown = "<repr failed>"
        return {"__unsupported__": type(x).__module__ + "." + type(x).__qualname__, "repr": shown}

    def npy(a):
        buf = io.BytesIO()
        np.save(buf, np.asarray(a, order="C"), allow_pickle=False)  # ascontiguousarray makes a 0-d array 1-d
        return base64.b64encode(buf.getvalue()).decode("ascii")

    def decode(x):
        if isinstance(x, list):
            return [decode(v) for v in x]
        if isinstance(x, dict):
            if "__ndarray__" in x:
                a = np.load(io.BytesIO(base64.b64decode(x["__ndarray__"])), allow_pickle=False)
                if x.get("torch"):
                    return torch_module().from_numpy(a.copy())
                return a
            if "__tuple__" in x:
                return tuple(decode(v) for v in x["__tuple__"])
            if "__dict__" in x:
                return {decode(k): decode(v) for k, v in x["__dict__"]}
            if "__float__" in x:
                return float(x["__float__"])
            if "__handle__" in x:
                return ns["_gradekit_objects"][x["__handle__"]]
            if "__params_of__" in x:  # the parameters of a model (a global or "@handle"), as a list
                return list(lookup(x["__params_of__"]).parameters())
        return x

    def torch_module():
        import torch as t
        return t

    def figure_of(fig):
        # A matplotlib figure as data (duck-typed: the shim imports no plotting library): each
        # panel's title and each scatter's points, mapped values and face colours.
        if not callable(getattr(fig, "get_axes", None)):
            raise TypeError("this is not a matplotlib figure (its type is " + type(fig).__name__ + ")")
        panels = []
        for ax in list(fig.get_axes())[:limits["max_layers"]]:
            scatters = []
            for c in list(getattr(ax, "collections", []))[:limits["max_layers"]]:
                if not callable(getattr(c, "get_offsets", None)):
                    continue
                values = c.get_array() if callable(getattr(c, "get_array", None)) else None
                scatters.append({"offsets": np.asarray(c.get_offsets(), dtype=np.float64),
                                 "values": None if values is None else np.asarray(np.ma.filled(values, np.nan), dtype=np.float64),
                                 "colors": np.asarray(c.get_facecolors(), dtype=np.float64)})
            panels.append({"title": str(ax.get_title())[:REPR], "scatters": scatters})
        return panels

    def lookup(path):
        first, *rest = path.split(".")
        if first.startswith("@"):
            obj = ns.get("_gradekit_objects", {})[first[1:]]
        elif first in ns:
            obj = ns[first]
        else:
            raise LookupError(first)
        for attr in rest:
            obj = getattr(obj, attr)
        return obj

    reply = {"token": token}
    try:
        op, name = request["op"], request["name"]
        if op == "files":  # files of the given names under the working folder (for notes only)
            import os
            wanted, found = set(decode(request["args"])[0]), []
            for folder, dirs, files in os.walk(".", followlinks=False):
                found += [os.path.join(folder, f)[2:] for f in files if f in wanted]
                if len(found) > limits["max_files"]:
                    break
            reply["value"] = found[:limits["max_files"]]
            publish(data={MIME: json.dumps(reply)}, metadata={})
            return
        if op == "platform":  # what the kernel runs on, for the report (torch only if imported)
            import os, platform as _platform
            seen = {"python": _platform.python_version(), "device": "cpu"}
            if torch is not None:
                seen.update(torch=str(torch.__version__), cuda=str(torch.version.cuda or ""),
                            tf32=f"cudnn {torch.backends.cudnn.allow_tf32}, matmul {torch.backends.cuda.matmul.allow_tf32}, "
                                 f"NVIDIA_TF32_OVERRIDE={os.environ.get('NVIDIA_TF32_OVERRIDE', '')}")
                if torch.cuda.is_available():
                    seen["device"] = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
            try:
                with open("/proc/driver/nvidia/version") as fh:
                    seen["driver"] = fh.readline().strip()[:200]
            except OSError:
                pass
            reply["value"] = encode(seen)
            publish(data={MIME: json.dumps(reply)}, metadata={})
            return
        if op == "defined":  # which of these top-level names the notebook defines
            reply["value"] = [isinstance(n, str) and n in ns for n in decode(request["args"])[0]]
            publish(data={MIME: json.dumps(reply)}, metadata={})
            return
        try:
            target = name if op == "torch.new" else lookup(name)  # torch.new: a name under torch.
        except LookupError as exc:
            reply["missing"] = str(exc.args[0]) if exc.args else name
            target = None
        except AttributeError as exc:
            reply["missing"] = name
            reply["detail"] = str(exc)
            target = None
        if "missing" not in reply:
            if op == "get":
                reply["value"] = encode(target)
            elif op == "has":
                reply["value"] = True
            elif op == "figure":
                reply["value"] = encode(figure_of(target))
            elif op in ("call", "call.watch", "new") or op.startswith("torch."):
                args = decode(request.get("args", []))
                kwargs = decode(request.get("kwargs", {"__dict__": []}))
                if op == "call.watch":  # the arguments as bytes before the call, to see in-place changes
                    seen = [json.dumps(encode(a)) for a in args], {k: json.dumps(encode(v)) for k, v in kwargs.items()}
                if op.startswith("torch."):
                    import torch  # the kernel's own, whatever the notebook calls `torch`
                    if torch_op is None:
                        raise ValueError("this bridge has no torch requests")
                    result = torch_op(op, target, args, kwargs, {"limits": limits, "lookup": lookup, "name": name})
                else:
                    result = target(*args, **kwargs)
                if op in ("new", "torch.new"):
                    handles = ns.setdefault("_gradekit_objects", {})
                    handles[token] = result
                    reply["value"] = {"__handle__": token, "class": type(result).__name__}
                elif op == "call.watch":
                    changed = [f"argument {i + 1}" for i, a in enumerate(args) if json.dumps(encode(a)) != seen[0][i]]
                    changed += [f"keyword `{k}`" for k, v in kwargs.items() if json.dumps(encode(v)) != seen[1][k]]
                    reply["value"] = encode((result, changed))
                else:
                    reply["value"] = encode(result)
            else:
                raise ValueError("unknown bridge operation " + repr(op))
        elif op == "has":
            reply.pop("missing")
            reply["value"] = False
    except BaseException as exc:  # the student's code raised (or exited): report it as data
        frames = traceback.extract_tb(exc.__traceback__)
        here = sys._getframe(0).f_code.co_filename  # the bridge's own cell: not the student's
        student = [f for f in frames if f.filename != here and (
            f.filename.startswith("<ipython-input") or "ipykernel_" in f.filename)]
        where = [f"line {f.lineno} in {f.name}: {(f.line or '').strip()}" for f in student[-3:]]
        reply = {"token": token, "raised": {"type": type(exc).__name__, "message": str(exc)[:limits["message_chars"]], "where": where}}
    try:
        payload = json.dumps(reply)
    except Exception as exc:
        payload = json.dumps({"token": token, "raised": {"type": "EncodingError", "message": str(exc)[:500], "where": []}})
    publish(data={MIME: payload}, metadata={})


def _gradekit_bind(limits_json, torch_op=None, _request=_gradekit_request):
    import json
    limits = json.loads(limits_json)

    def request(_request_json):
        return _request(_request_json, limits, torch_op)
    return request
