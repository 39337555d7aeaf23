# Kernel-side half of the bridge's torch requests. Like shim.py, this file is NEVER imported
# by the grader: its text is appended to shim.py's when the shim is installed, bound into the
# request function and deleted from the student's globals. Everything it needs is imported
# or defined inside the function, so no global of the student's (a `torch` of their own, say)
# changes what it does. It returns plain values (dicts with str keys, lists, numbers, tensors)
# that shim.py's `encode` turns into data; the trusted side (gradekit/bridge/models.py) then
# checks every field. A refusal (not a module, too many layers) raises an exception named
# GradekitRefusal: its message is shown to the student as it is.
def _gradekit_torch_op(op, target, args, kwargs, ctx):
    import copy, warnings
    import torch
    nn, limits, find = torch.nn, ctx["limits"], ctx["lookup"]
    shown = "the grader's object" if ctx["name"].startswith("@") else f"`{ctx['name']}`"
    # the hyper-parameters a layer reports, where it has them (as torch stores them: Conv2d's
    # kernel_size is (3, 3), MaxPool2d's is 3; `bias` is whether it has one)
    HYPER = ("in_channels", "out_channels", "in_features", "out_features", "kernel_size", "stride",
             "padding", "dilation", "groups", "output_padding", "padding_mode", "bias", "p", "inplace",
             "negative_slope", "alpha", "beta", "threshold", "lambd", "min_val", "max_val", "approximate",
             "dim", "num_features", "eps", "momentum", "affine", "track_running_stats", "normalized_shape",
             "elementwise_affine", "num_groups", "num_channels", "output_size", "return_indices",
             "ceil_mode", "count_include_pad", "divisor_override", "norm_type", "start_dim", "end_dim",
             "unflattened_size", "num_embeddings", "embedding_dim", "padding_idx", "max_norm",
             "input_size", "hidden_size", "num_layers", "nonlinearity", "batch_first", "dropout",
             "bidirectional", "proj_size", "size", "scale_factor", "mode", "align_corners",
             "upscale_factor", "num_parameters", "init")

    class GradekitRefusal(Exception):
        pass

    def typename(obj):
        cls = type(obj)
        return cls.__name__ if cls.__module__.startswith("torch.") else cls.__module__ + "." + cls.__qualname__

    def plain(v, depth=0):  # a hyper-parameter as data, or None where it is not plain
        if isinstance(v, str):
            return str(v)[:200]
        if v is None or isinstance(v, (bool, int, float)):
            return v
        if isinstance(v, torch.Tensor) and v.numel() == 1:  # an lr held as a tensor
            return v.item()
        if depth > 2:
            return None
        if isinstance(v, dict) and type(v).__name__ == "Counter":  # MultiStepLR's milestones
            return sorted(k for k in v.elements() if isinstance(k, int))
        if isinstance(v, (tuple, list)) and len(v) <= 64:
            items = [plain(x, depth + 1) for x in v]
            if all(x is not None or y is None for x, y in zip(items, v)):
                return tuple(items) if isinstance(v, tuple) else items
        return None

    def module(obj, what):
        if not isinstance(obj, nn.Module):
            raise GradekitRefusal(f"{what} is not a torch.nn.Module (its type is {type(obj).__name__})")
        return obj

    def named(name):  # a model named by the grader: a global of the notebook or a handle
        try:
            return module(find(name), f"`{name}`")
        except LookupError:
            raise GradekitRefusal(f"`{name}` is not defined in your notebook") from None

    def numel(params):
        return sum(p.numel() for p in params)

    def to_model(x, model):  # the grader's floating input in the model's dtype, on its device
        p = next((p for p in model.parameters() if p.is_floating_point()), None)
        if p is not None and isinstance(x, torch.Tensor):
            x = x.to(device=p.device, dtype=p.dtype if x.is_floating_point() else x.dtype)
        return x

    def run(model, x, mode):
        """model(x) under no_grad in the given mode; every module's mode, the buffers (BatchNorm
        statistics) and the CPU random state are as they were afterwards."""
        if mode not in ("eval", "train"):
            raise GradekitRefusal(f"unknown mode {mode!r}")
        if isinstance(x, torch.Tensor) and x.dim() and x.shape[0] > limits["max_batch"]:
            raise GradekitRefusal(f"a batch of more than {limits['max_batch']} inputs")
        flags = [(m, m.training) for m in model.modules()]
        saved = [(b, b.detach().clone()) for b in model.buffers()] if mode == "train" else []
        try:
            model.train(mode == "train")
            with torch.no_grad(), torch.random.fork_rng(devices=[]):
                return model(to_model(x, model))
        finally:
            for m, flag in flags:
                m.training = flag
            with torch.no_grad():
                for b, value in saved:
                    b.copy_(value)

    def layers_of(model):
        found = [(n, m) for n, m in model.named_modules()
                 if not any(True for _ in m.children()) or any(True for _ in m.parameters(recurse=False))]
        if len(found) > limits["max_layers"]:
            raise GradekitRefusal(f"your model has more than {limits['max_layers']} layers")
        return found

    def shape_of(out):
        if isinstance(out, (tuple, list)) and out:
            out = out[0]
        return list(out.shape) if isinstance(out, torch.Tensor) else None

    def hooked(model, names, pre, post):
        handles = []
        try:
            for n, m in names:
                handles.append(m.register_forward_pre_hook(lambda m, i, n=n: pre(n, m, i)))
                handles.append(m.register_forward_hook(lambda m, i, o, n=n: post(n, m, i, o)))
        except BaseException:
            for h in handles:
                h.remove()
            raise
        return handles

    if op == "torch.structure":  # args: (example or None,)
        model = module(target, shown)
        layers = layers_of(model)
        out = {"class": typename(model), "training": bool(model.training),
               "parameters": numel(model.parameters()),
               "trainable": numel(p for p in model.parameters() if p.requires_grad),
               "layers": [], "executed": None}
        for n, m in layers:
            hyper = {}
            for key in HYPER:
                if key in m._parameters or hasattr(m, key):
                    raw = getattr(m, key, None)
                    if key == "bias" and (raw is None or isinstance(raw, torch.Tensor)):
                        raw = raw is not None
                    v = plain(raw)
                    if v is not None or raw is None:
                        hyper[key] = v
            own = list(m.parameters(recurse=False))
            out["layers"].append([n, typename(m), hyper, numel(own), numel(p for p in own if p.requires_grad)])
        if args and args[0] is not None:
            executed, open_calls = [], {}

            def pre(n, m, i):
                if len(executed) >= limits["max_layers"]:
                    raise GradekitRefusal(f"your model's forward ran more than {limits['max_layers']} layers")
                open_calls.setdefault(n, []).append(len(executed))
                executed.append([n, None])

            def post(n, m, i, o):
                if open_calls.get(n):
                    executed[open_calls[n].pop()][1] = shape_of(o)
            handles = hooked(model, layers, pre, post)
            try:
                run(model, args[0], "eval")
            finally:
                for h in handles:
                    h.remove()
            out["executed"] = executed
        return out

    if op == "torch.forward":  # args: (x, mode, layer names or None)
        model = module(target, shown)
        x, mode, names = args
        if names is None:
            return run(model, x, mode)
        by_name = dict(model.named_modules())
        for n in names:
            if n not in by_name:
                raise GradekitRefusal(f"your model has no layer named `{n}`")
        captured = {}

        def keep(v):  # a copy: a later in-place layer must not change what was captured
            if isinstance(v, (tuple, list)):
                return tuple(keep(t) for t in v)
            return v.detach().clone() if isinstance(v, torch.Tensor) else v

        def pre(n, m, i):
            if n not in captured:  # a layer that runs several times: its first call
                captured[n] = {"input": keep(i[0] if len(i) == 1 else i)}

        def post(n, m, i, o):
            if "output" not in captured[n]:
                captured[n]["output"] = keep(o)
        handles = hooked(model, [(n, by_name[n]) for n in names], pre, post)
        try:
            run(model, x, mode)
        finally:
            for h in handles:
                h.remove()
        for n in names:
            if n not in captured:
                raise GradekitRefusal(f"the layer `{n}` of your model did not run in forward")
        return captured

    if op == "torch.state_dict":  # args: () for every weight, or (fractions,) for a sample of each
        weights = module(target, shown).state_dict()
        if not args:
            return {str(k): v for k, v in weights.items()}
        fractions = torch.as_tensor(args[0], dtype=torch.float64)
        out = {}
        for k, v in weights.items():  # positions as bridge.models.sample_positions computes them
            flat = v.detach().reshape(-1)
            at = (fractions * flat.numel()).long().clamp(max=max(flat.numel() - 1, 0))
            out[str(k)] = {"shape": list(v.shape), "values": flat[at.to(flat.device)] if flat.numel() else flat}
        return out

    if op == "torch.gradients":  # args: (x, cotangent, mode): d sum(cotangent * model(x)) / d parameter
        model, x, v, mode = module(target, shown), args[0], args[1], args[2]
        if mode not in ("eval", "train"):
            raise GradekitRefusal(f"unknown mode {mode!r}")
        if isinstance(x, torch.Tensor) and x.dim() and x.shape[0] > limits["max_batch"]:
            raise GradekitRefusal(f"a batch of more than {limits['max_batch']} inputs")
        params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        kept = [(p, p.grad) for _, p in params]
        flags = [(m, m.training) for m in model.modules()]
        saved = [(b, b.detach().clone()) for b in model.buffers()] if mode == "train" else []
        try:
            model.train(mode == "train")
            for _, p in params:
                p.grad = None
            with torch.enable_grad(), torch.random.fork_rng(devices=[]):
                out = model(to_model(x, model))
                if not isinstance(out, torch.Tensor) or tuple(out.shape) != tuple(v.shape):
                    raise GradekitRefusal(f"{shown} returned {tuple(getattr(out, 'shape', ())) or type(out).__name__} "
                                          f"where the grader expected a tensor of shape {tuple(v.shape)}")
                if out.requires_grad:
                    (out * v.to(device=out.device, dtype=out.dtype)).sum().backward()
            return {n: (None if p.grad is None else p.grad.detach().clone()) for n, p in params}
        finally:
            for p, g in kept:
                p.grad = g
            for m, flag in flags:
                m.training = flag
            with torch.no_grad():
                for b, value in saved:
                    b.copy_(value)

    if op == "torch.load_state_dict":  # args: (dict of tensors, strict)
        result = module(target, shown).load_state_dict(args[0], strict=bool(args[1]))
        return {"missing": list(result.missing_keys), "unexpected": list(result.unexpected_keys)}

    if op == "torch.optimizer":  # args: (model name or None,)
        if not isinstance(target, torch.optim.Optimizer):
            raise GradekitRefusal(f"{shown} is not a torch.optim optimizer (its type is {type(target).__name__})")
        model = named(args[0]) if args and args[0] is not None else None
        names = {id(p): n for n, p in model.named_parameters()} if model is not None else {}
        groups, seen = [], set()
        for g in target.param_groups:
            params = list(g["params"])
            seen.update(id(p) for p in params)
            hyper = {k: plain(v) for k, v in g.items() if k != "params" and isinstance(k, str)}
            groups.append({"hyper": {k: v for k, v in hyper.items() if v is not None or g[k] is None},
                           "parameters": len(params), "elements": numel(params),
                           "names": [names[id(p)] for p in params if id(p) in names]})
        unassigned = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in seen] if model is not None else []
        return {"type": typename(target), "groups": groups, "unassigned": unassigned}

    if op == "torch.scheduler":  # args: (epochs,)
        epochs = int(args[0])
        if not isinstance(target, torch.optim.lr_scheduler.LRScheduler):
            raise GradekitRefusal(f"{shown} is not a torch.optim.lr_scheduler scheduler (its type is {type(target).__name__})")
        if not 0 <= epochs <= limits["max_epochs"]:
            raise GradekitRefusal(f"cannot follow a scheduler for {epochs} epochs")
        settings = {k: plain(v) for k, v in vars(target).items() if not k.startswith("_") and k != "optimizer"}
        settings = {k: v for k, v in settings.items() if v is not None or vars(target)[k] is None}
        lrs = []
        if epochs and not isinstance(target, torch.optim.lr_scheduler.ReduceLROnPlateau):
            opt = target.optimizer  # the copy shares the parameters and their state, never changed here
            memo = {id(p): p for g in opt.param_groups for p in g["params"]}
            memo.update((id(t), t) for state in opt.state.values() if isinstance(state, dict)
                        for t in state.values() if isinstance(t, torch.Tensor))
            twin = copy.deepcopy(target, memo)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for e in range(epochs):
                    lrs.append([float(g["lr"]) for g in twin.optimizer.param_groups])
                    if e + 1 < epochs:
                        twin.step()
        return {"type": typename(target), "settings": settings, "lrs": lrs}

    if op == "torch.step":  # args: (model name, stale gradient or None, args, kwargs)
        model, stale, fargs, fkwargs = named(args[0]), args[1], args[2], args[3]
        params = list(model.named_parameters())
        before = {n: p.detach().to(torch.float64, copy=True) for n, p in params}
        if stale is not None:
            for n, p in params:
                if p.requires_grad:
                    p.grad = torch.full_like(p, float(stale))
        result = target(*fargs, **fkwargs)
        delta = {n: p.detach().to(torch.float64) - before[n] for n, p in model.named_parameters()
                 if n in before and p.shape == before[n].shape}  # by name: a replaced parameter counts too
        return {"result": result, "delta": delta}

    if op == "torch.new":  # target: a dotted name under torch., resolved in torch itself
        parts = str(target).split(".")
        if parts[0] != "torch" or len(parts) < 2 or not all(p.isidentifier() and not p.startswith("_") for p in parts[1:]):
            raise GradekitRefusal(f"`{target}` is not a public name under torch.")
        obj = torch
        for p in parts[1:]:
            if not hasattr(obj, p):
                raise GradekitRefusal(f"the kernel's torch {torch.__version__} has no `{target}`")
            obj = getattr(obj, p)
        if not callable(obj):
            raise GradekitRefusal(f"`{target}` cannot be called")
        return obj(*args, **kwargs)

    raise GradekitRefusal("unknown bridge operation " + repr(op))
