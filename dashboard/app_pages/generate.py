import streamlit as st

from dashboard import comparison_view, job_view, state

st.title("Generate")
state.about("""
Greedy generation of a decoder, measured step by step (`python -m profiler generate MODEL`). **TTFT** is the prefill
step (prompt in, first token out), **TPOT** one decode step, **tokens/s** the whole generation's throughput. The
per-token chart shows how a decode step slows as the KV cache grows; each phase is set against its roof (prefill:
compute, decode: memory bandwidth). *Optimize for generation* applies passes and times base and optimized
generations side by side (`python -m optimizers generate MODEL --passes ... | --search`). `smollm2` is a real
decoder (SmolLM2-135M, Llama architecture): with its tokenizer the prompt is prose and what each model wrote is shown;
the other samples have random weights, on which greedy choices are near-ties.
""")
run = state.pick_run(key="pick_generate_run")
if run is not None and run.generation is None:
    st.info("This run is not a generation. Pick one made by `python -m profiler generate MODEL` (e.g. llama-tiny).")
elif run is not None:
    import pandas as pd
    import plotly.express as px

    from optimizers.generation import generation_views

    g = run.generation
    views = generation_views(g)
    c = st.columns(4)
    c[0].metric(
        "TTFT", f"{g.ttft_ms:.3g} ms", help=f"p10-p90 {g.ttft.p10_ms:.3g}-{g.ttft.p90_ms:.3g} ms" if g.ttft else None
    )
    c[1].metric("TPOT", f"{g.tpot_ms.median:.3g} ms", help=f"p10-p90 {g.tpot_ms.p10:.3g}-{g.tpot_ms.p90:.3g} ms")
    c[2].metric("tokens/s", f"{g.tokens_per_s:.4g}")
    c[3].metric("decode tokens/s", f"{g.decode_tokens_per_s:.4g}")
    st.caption(f"TPOT spread: p10 {g.tpot_ms.p10:.3g} / p90 {g.tpot_ms.p90:.3g} / IQR {g.tpot_ms.iqr:.2g} ms over "
               f"{g.tpot_ms.n} steps ({g.tpot_ms.noise}); batch {g.config.batch_size}, prompt {g.config.prompt_len}, "
               f"{g.config.new_tokens} new tokens, {g.config.cache} cache, {g.config.dtype}")
    if g.text:
        st.code(g.text, language=None, wrap_lines=True)
        st.caption("What the model wrote (sequence 0, greedy), through its own tokenizer.")
    left, right = st.columns(2)
    if views["per_token"]:
        left.plotly_chart(px.line(pd.DataFrame(views["per_token"]), x="step", y="itl_ms", markers=True,
                                  title="Per-token latency along the generation"), key="itl")
    right.plotly_chart(
        px.area(pd.DataFrame(views["kv"]), x="context_tokens", y="kv_cache_bytes", title="KV-cache growth"), key="kv"
    )
    st.subheader("Prefill and decode against their roofs")
    st.dataframe(pd.DataFrame(views["phases"]), hide_index=True)
    if views["ops"]:
        st.plotly_chart(px.bar(pd.DataFrame(views["ops"]), x="exec_ms", y="op", color="phase", orientation="h",
                               title="Top operators per phase"), key="ops")

st.subheader("Optimize for generation")
with st.form("genopt"):
    from optimizers.generation import PASSES  # noqa: E402 - torch-free module import stays cheap after the first page

    model = st.text_input("Model", value=run.model.name if run is not None else "llama-tiny")
    passes = st.multiselect("Passes (in order)", list(PASSES), default=["bf16"])
    search = st.checkbox("Search instead (singles, then the best pairs)")
    objective = st.radio("Objective", ["tpot", "ttft"], horizontal=True)
    cols = st.columns(3)
    prompt_len = cols[0].number_input("Prompt tokens", 1, 4096, 32)
    new_tokens = cols[1].number_input("New tokens", 2, 4096, 16)
    rounds = cols[2].number_input("ABBA rounds", 1, 20, 3)
    go = st.form_submit_button("Optimize")
jobs = state.job_manager()
if go:
    job = job_view.submit(jobs, model, kind="generate", passes=passes, search=search, objective=objective,
                          generate={"prompt_len": int(prompt_len), "new_tokens": int(new_tokens)}, rounds=int(rounds))
    if job is not None:
        st.session_state["generate_job"] = job.id


def show_result(job) -> None:
    from profiler.schema import GenerationResult

    comparison_view.show_generation([GenerationResult.from_dict(r) for r in job.result])


@st.fragment(run_every=0.5)
def generate_result():
    job_view.panel(jobs, "generate_job", "generate", "Optimizing {spec} for generation ...",
                   "Optimizing for generation", show_result)


generate_result()
