"""`gptx sample`: generate text from a gptx checkpoint or a Hugging Face GPT-2 directory, streamed as it is made."""
from __future__ import annotations

import codecs
import sys

from gptx.cli._numbers import integer


def add_parser(sub):
    p = sub.add_parser("sample", help="generate text from a checkpoint",
                       description="Generate text from a gptx checkpoint (a training run directory or one of its "
                       "step directories) or a Hugging Face GPT-2 directory (config.json + model.safetensors). The "
                       "tokenizer saved in the folder is used (GPT-2 BPE for a Hugging Face folder without "
                       "tokenizer files); --tokenizer overrides it.")
    p.add_argument("checkpoint", metavar="CHECKPOINT")
    add_tokenizer_argument(p)
    p.add_argument("--prompt", default=None, help="text to continue (default: the end-of-text token, or a newline)")
    p.add_argument("--max-new-tokens", type=integer(0), default=None, metavar="N",
                   help="tokens to generate per sample (default: 200, or what the context leaves room for)")
    p.add_argument("--temperature", type=float, default=1.0, help="0 = greedy (default 1)")
    p.add_argument("--top-k", type=int, default=None, metavar="K")
    p.add_argument("--top-p", type=float, default=None, metavar="P")
    p.add_argument("--min-p", type=float, default=None, metavar="P")
    p.add_argument("--repetition-penalty", type=float, default=1.0, metavar="R")
    p.add_argument("--presence-penalty", type=float, default=0.0, metavar="X")
    p.add_argument("--frequency-penalty", type=float, default=0.0, metavar="X")
    p.add_argument("--stop", action="append", default=None, metavar="TEXT", help="stop at this text (repeatable)")
    p.add_argument("--seed", type=int, default=None, help="same seed, same text (default: random)")
    p.add_argument("--num-samples", type=integer(1), default=1, metavar="N", help="samples, generated as one batch")
    p.add_argument("--threads", type=integer(1), default=None, metavar="N", help="CPU threads (default: all cores)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                   help="compute dtype; bfloat16 (CUDA only) is mixed precision with float32 master weights")
    p.add_argument("--stream", action="store_true", default=None, help="print tokens as they come (default)")
    p.add_argument("--no-stream", dest="stream", action="store_false", help="print each sample when it is done")
    p.add_argument("--sliding-window", action="store_true",
                   help="allow prompt + new tokens beyond the context (the oldest tokens are dropped)")
    return p


def _check_context(prompt_len: int, max_new_tokens, block: int) -> None:
    """The context message names what the user gave: the prompt alone, or the prompt plus their --max-new-tokens."""
    if max_new_tokens is None:
        if prompt_len >= block:
            raise ValueError(f"the prompt is {prompt_len} tokens, which leaves no room in the model's context "
                             f"({block} tokens); shorten --prompt or pass --sliding-window")
    elif prompt_len + max_new_tokens > block:
        raise ValueError(f"the prompt ({prompt_len} tokens) + --max-new-tokens ({max_new_tokens}) exceeds the "
                         f"model's context ({block} tokens); lower --max-new-tokens or pass --sliding-window")


TOKENIZER_HELP = ("tokenizer to use instead of the one saved with the model: 'bytes', 'gpt2', or a folder/file "
                  "saved by Tokenizer.save or a Hugging Face tokenizer.json")


def add_tokenizer_argument(p):
    p.add_argument("--tokenizer", default=None, metavar="bytes|gpt2|PATH", help=TOKENIZER_HELP)


def run(args) -> int:
    import gptx
    from gptx.sampling import SamplingParams

    try:
        if args.threads:
            gptx.set_num_threads(args.threads)
        if args.num_samples < 1:
            raise ValueError(f"--num-samples must be >= 1, got {args.num_samples}")
        model, tok = gptx.load(args.checkpoint, tokenizer=args.tokenizer, device=args.device, dtype=args.dtype)
        if args.prompt:
            prompt = tok.encode(args.prompt)
        else:
            prompt = [tok.eot_token] if tok.eot_token is not None else tok.encode("\n")
        block = model.config.block_size
        # Check the sampling settings before anything is printed.
        SamplingParams(args.temperature, args.top_k, args.top_p, args.min_p, args.repetition_penalty,
                       args.presence_penalty, args.frequency_penalty)
        if not args.sliding_window:
            _check_context(len(prompt), args.max_new_tokens, block)
        if args.max_new_tokens is None:
            args.max_new_tokens = 200 if args.sliding_window else min(200, block - len(prompt))
        stop = ([tok.eot_token] if tok.eot_token is not None else []) + list(args.stop or [])
        kw = dict(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
                  repetition_penalty=args.repetition_penalty, presence_penalty=args.presence_penalty,
                  frequency_penalty=args.frequency_penalty, stop=stop or None, seed=args.seed, tokenizer=tok,
                  sliding_window=args.sliding_window)
        prompts = [prompt] * args.num_samples
        out = sys.stdout
        head = args.prompt or ""
        if args.stream is False:
            results = model.generate(prompts, args.max_new_tokens, **kw)
            for i, ids in enumerate(results):
                if args.num_samples > 1:
                    out.write(f"--- sample {i + 1} ---\n")
                out.write(head + tok.decode([t for t in ids if t != tok.eot_token]) + "\n")
            out.flush()
            return 0
        # Streaming: one sample at a time, so the text of each appears in order as it is made.
        for i in range(args.num_samples):
            if args.num_samples > 1:
                out.write(f"--- sample {i + 1} ---\n")
            out.write(head)
            out.flush()
            # Stream (seed, i): sample i is the same text as sequence i of the --no-stream batch.
            seed = None if args.seed is None else [(args.seed, i)]
            # Token ids, decoded here, so the end-of-text token that stops a sample is not printed.
            dec = codecs.getincrementaldecoder("utf-8")(errors="replace")
            for t in model.stream(prompt, args.max_new_tokens, text=False, **dict(kw, seed=seed)):
                if t != tok.eot_token:
                    out.write(dec.decode(tok.token_bytes(t)))
                    out.flush()
            out.write(dec.decode(b"", final=True) + "\n")
        out.flush()
        return 0
    except (ValueError, TypeError, RuntimeError) as e:  # TypeError/RuntimeError: --device/--dtype not usable here
        print(f"gptx sample: error: {e}", file=sys.stderr)
        return 1
