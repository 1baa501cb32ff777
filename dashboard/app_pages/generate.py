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
if pending := st.session_state.pop("generation_to_show", None):  # a run just profiled below: select it
    st.session_state[state.RUN_KEY] = st.session_state["pick_generate_run"] = pending
run = state.pick_run(key="pick_generate_run")
gen_run = run if run is not None and run.generation is not None else None
jobs = state.job_manager()


def generated(job) -> None:
    """A new generation run was saved: show it."""
    if job.run_id and st.session_state.get("generation_shown") != job.id:
        st.session_state["generation_shown"] = job.id
        st.session_state["generation_to_show"] = job.run_id
        st.rerun()


with st.expander("Profile a generation", expanded=gen_run is None, icon=":material/play_circle:"):
    from optimizers.generation import default_model

    with st.form("genprofile", enter_to_submit=False):
        cols = st.columns([3, 1, 1, 1])
        gen_model = cols[0].text_input("Decoder (a causal LM: sample name, HF folder or file.py:factory)",
                                       value=default_model(), key="gen_profile_model")
        gen_batch = cols[1].number_input("Batch", 1, 64, 1, key="gen_profile_batch")
        gen_prompt = cols[2].number_input("Prompt tokens", 1, 4096, 32, key="gen_profile_prompt")
        gen_new = cols[3].number_input("New tokens", 2, 4096, 32, key="gen_profile_new")
        profile_go = st.form_submit_button("Profile the generation", type="primary")
    if profile_go:
        job = job_view.submit(jobs, gen_model.strip(), kind="profile-generation", runs_dir=state.runs_dir(),
                              generate={"batch_size": int(gen_batch), "prompt_len": int(gen_prompt),
                                        "new_tokens": int(gen_new)})
        if job is not None:
            st.session_state["generation_job"] = job.id

    @st.fragment(run_every=0.5)
    def generation_progress():
        job_view.panel(jobs, "generation_job", "profile-generation", "Profiling the generation of {spec} ...",
                       "Profiling a generation", generated)

    generation_progress()

if run is not None and gen_run is None:
    st.info("The selected run is not a generation: profile one above, or pick a run made here or by "
            "`python -m profiler generate MODEL`.")
elif gen_run is not None:
    import pandas as pd
    import plotly.express as px

    from optimizers.generation import generation_views

    g = gen_run.generation
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
                                  labels={"step": "decode step", "itl_ms": "time per token (ms)"},
                                  title="Per-token latency along the generation"), key="itl")
    right.plotly_chart(
        px.area(pd.DataFrame(views["kv"]), x="context_tokens", y="kv_cache_mib",
                labels={"context_tokens": "tokens in context", "kv_cache_mib": "KV cache (MiB)"},
                title="KV-cache growth"), key="kv")
    st.subheader("Prefill and decode against their roofs")
    st.dataframe(pd.DataFrame(views["phases"]).rename(columns={
        "measured_ms": "measured (ms)", "floor_ms": "floor at peak (ms)", "of_roof": "share of roof",
        "MB": "MB moved"}), hide_index=True, width="stretch")
    if views["ops"]:
        st.plotly_chart(px.bar(pd.DataFrame(views["ops"]), x="exec_ms", y="op", color="phase", orientation="h",
                               labels={"exec_ms": "exec time (ms)", "op": "operator"},
                               title="Top operators per phase"), key="ops")

st.subheader("Optimize for generation")
with st.form("genopt", enter_to_submit=False):
    import torch

    from optimizers.generation import PASSES, default_model, default_passes, generation_pass

    from optimizers.tables import pass_label

    cpu = torch.device("cpu")
    labels = pass_label([{"pass": n, "emulated here": generation_pass(n).emulated(cpu)} for n in PASSES])
    model = st.text_input("Decoder", value=(gen_run.model.spec or gen_run.model.name) if gen_run else default_model(),
                          key="gen_opt_model")
    passes = st.multiselect("Passes (in order)", list(PASSES), default=default_passes(cpu), key="gen_opt_passes",
                            format_func=labels.get)  # marked as the Optimize page marks an emulated pass
    search = st.checkbox("Search instead (singles, then the best pairs)")
    objective = st.radio("Objective", ["tpot", "ttft"], horizontal=True)
    cols = st.columns(3)
    prompt_len = cols[0].number_input("Prompt tokens", 1, 4096, 32)
    new_tokens = cols[1].number_input("New tokens", 2, 4096, 16)
    rounds = cols[2].number_input("ABBA rounds", 1, 20, 3)
    go = st.form_submit_button("Optimize")
if go:
    job = job_view.submit(jobs, model.strip(), kind="generate", passes=passes, search=search, objective=objective,
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
