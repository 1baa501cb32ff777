import streamlit as st

from dashboard import state
from dashboard.sysinfo import snapshot
from profiler import devices

st.title("System")
state.about("""
Live load on this machine, refreshed every two seconds. Timing is only trustworthy when the machine is otherwise
quiet: if CPU use is high before you start profiling, another job or another participant is measuring.
""")

cpu = devices.device_info(devices.resolve_device("cpu"))
st.markdown(f"**CPU:** {cpu.name}, {cpu.threads} threads. {devices.capability_line(cpu)}")
if cpu.emulated:
    st.caption(f"This CPU has no {' or '.join(cpu.emulated)} instructions: passes in those precisions run emulated "
               "(converted to fp32 and back around each operation), are marked so, and the search skips them unless "
               "asked.")


@st.fragment(run_every=2)
def live():
    snap = snapshot()
    c1, c2, c3 = st.columns(3)
    c1.metric("CPU", f"{snap['cpu_percent']:.0f}%", f"{snap['cpu_count']} cores", delta_color="off", delta_arrow="off")
    c2.metric("Memory", f"{snap['mem_used_gib']:.1f} / {snap['mem_total_gib']:.1f} GiB", f"{snap['mem_percent']:.0f}%",
              delta_color="off", delta_arrow="off")
    c3.metric("Load (1 min)", f"{snap['load1']:.2f}")
    st.progress(min(1.0, snap["cpu_percent"] / 100), text="CPU")
    st.progress(min(1.0, snap["mem_percent"] / 100), text="Memory")
    if snap["gpus"]:
        for g in snap["gpus"]:
            st.subheader(f"GPU {g['index']}: {g['name']}")
            d1, d2, d3, d4 = st.columns(4)
            d1.metric("Utilisation", f"{g['util_percent']}%")
            d2.metric("Memory", f"{g['mem_used_gib']:.1f} / {g['mem_total_gib']:.1f} GiB")
            d3.metric("Temperature", f"{g['temperature_c']} °C")
            d4.metric("Power", f"{g['power_w']:.0f} W")
    else:
        st.caption(f"No NVIDIA GPU visible ({snap['gpu_note']}).")


live()
