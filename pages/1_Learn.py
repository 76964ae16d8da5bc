"""Learn: the degradation problem and the residual idea in a few paragraphs, each pointing at a chart the app
draws, and one button that starts the classic demo (plain-20/56 against ResNet-20/56)."""

import streamlit as st

from explorer import charts
from explorer.ui import config_form, panels, session, theme

session.require_navigation()
st.title("Why deeper nets got worse, and how a shortcut fixed it")
panels.data_banner()

if st.button("Start the classic demo: plain-20 and plain-56 against ResNet-20 and ResNet-56", type="primary",
             icon=":material/play_arrow:", key="demo"):
    config_form.load_default()
    if session.train(config_form.current_config()) or st.session_state.get(session.SLOW_NOTICE):
        st.switch_page("pages/2_Lab.py")
st.caption("Four networks train in lockstep on the same batches and the Lab shows them live. On a CPU the demo "
           "trains on a subset of the images; on a GPU on all of them.")

demo_run = session.latest_twin_run()
text, chart = st.columns(2, gap="large")
with text:
    st.subheader("1. More layers, more training error")
    st.markdown(
        "Take a convolutional net that trains well and stack more layers on it. The deeper net could always do at "
        "least as well: the extra layers would only have to pass their input through unchanged. Yet a 56-layer "
        "plain net ends up with **higher training error** than a 20-layer one (He et al. 2015, Fig. 1). "
        "*Chart: the plain panel of the error chart, darker red (56 layers) above lighter red (20).*")
    st.subheader("2. It is not overfitting")
    st.markdown(
        "Overfitting means low training error and high test error. Here the **training** error itself is worse "
        "(the dashed curves): the deeper net is harder to *optimise*, not too flexible. "
        "*Chart: the same panel; dashed lines are training error.*")
    st.subheader("3. The residual idea")
    st.markdown(
        "Instead of asking a few layers to produce the wanted mapping H(x) outright, let them produce only the "
        "**change**, F(x) = H(x) − x, and add the input back through a shortcut: the block outputs F(x) + x. A "
        "block that should do nothing now only has to push its weights towards zero, which training finds easily. "
        "The identity shortcut adds no parameters. *Chart: the Architecture page draws both nets block by block.*")
    st.subheader("4. Depth helps again")
    st.markdown(
        "With shortcuts the 56-layer net trains **at least as well** as the 20-layer one. "
        "*Chart: the residual panel, darker blue (56) at or below lighter blue (20).*")
    st.subheader("5. Residual layers make small corrections")
    st.markdown(
        "The responses of residual layers are weaker than those of plain layers (He et al. 2015, Fig. 7): each "
        "block adjusts its input slightly rather than rebuilding it. Watch the gradients too: in a deep plain net, "
        "compare the early layers' gradients with the late layers', then do the same with shortcuts. "
        "*Charts: the Gradients page (layer response std; gradient heatmap).*")
with chart:
    if demo_run is None:
        st.info("The charts appear here after the first demo run. Press the button above.")
    else:
        run_id, probe_every = demo_run
        tables = panels.read_tables(session.get_store(), run_id, probe_every)
        theme.show_chart(charts.error_figure(tables.steps, tables.evals, "epoch", theme.scale()), key="learn-errors",
                         caption=f"Run {run_id}: training error dashed, test error solid.")
        if not tables.probes.empty:
            theme.show_chart(charts.layer_profile(tables.probes, "response_std", scale=theme.scale()),
                             key="learn-response", caption="Layer response std at the latest probe (Fig. 7).")
    st.page_link("pages/2_Lab.py", label="Open the Lab", icon=":material/science:")
    st.page_link("pages/3_Architecture.py", label="See the blocks", icon=":material/account_tree:")
    st.page_link("pages/5_Gradients.py", label="Look at the gradients", icon=":material/gradient:")
