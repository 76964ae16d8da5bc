"""Learn: the degradation problem and the residual idea, each claim beside a chart of its reference run.

Every chart draws the claim's pinned reference run (`explorer.claims`), recorded where the effect is clear; a run
the student started in the Lab is drawn beside it, labelled as theirs, never in its place. One button starts the
classic demo (plain-20/56 against ResNet-20/56) and opens the Lab.
"""

from __future__ import annotations

import streamlit as st

from explorer.claims import CLAIMS, Claim
from explorer.config import ModelConfig
from explorer.diagram import model_dot
from explorer.ui import config_form, panels, session
from explorer.ui.nav import link, switch
from explorer.ui.session import plain

DEMO_MODELS = {"plain20", "plain56", "resnet20", "resnet56"}


def reference_label(run_id: str) -> str:
    facts = session.recorded_facts(run_id)
    where = facts.get("device", "")
    return (f"Reference run {run_id}: recorded on {plain(where)}, {plain(facts.get('data_source', ''))}"
            if facts else f"Reference run {run_id}")


def students_run() -> str | None:
    """The Lab run of this session, when it trains the classic demo's nets (the only runs these charts fit)."""
    run_id = st.session_state.get("lab_run")
    config = session.stored_config(run_id) if run_id else None
    return run_id if config is not None and DEMO_MODELS <= set(config.labels) else None


def claim_chart(claim: Claim, reference: str | None, own: str | None) -> None:
    if claim.chart == "architecture":
        left, right = st.columns(2)
        for column, label in zip((left, right), ("plain56", "resnet56")):
            with column:
                st.caption(ModelConfig.parse(label).display_name)
                st.graphviz_chart(model_dot(ModelConfig.parse(label), collapse_after=2, detail="blocks"),
                                  width="stretch")
        return
    if reference is None:
        st.info("The reference run of this claim is not installed (assets/recorded/): record it with "
                f"`python -m explorer record {claim.reference}`.")
        return
    panels.show_run_charts(reference, "epoch", f"learn-{claim.key}", layout=[[claim.chart]])
    st.caption(reference_label(reference))
    if own:
        st.markdown("**Your run** (from the Lab), beside the reference:")
        panels.show_run_charts(own, "epoch", f"learn-own-{claim.key}", layout=[[claim.chart]])
        st.caption(f"Your run {own}")


def page() -> None:
    st.title("Why deeper nets got worse, and how a shortcut fixed it")
    panels.data_banner()
    if st.button("Start the classic demo: plain-20 and plain-56 against ResNet-20 and ResNet-56", type="primary",
                 icon=":material/play_arrow:", key="demo"):
        config_form.load_default()
        run_id = session.submit(config_form.current_config(), preset=config_form.DEMO_PRESET)
        if run_id:
            st.session_state["lab_run"] = run_id
            switch("lab")
    st.caption("Four networks train in lockstep on the same batches and the Lab shows them live. On a CPU the demo "
               "trains on a subset of the images and shows the first half of the story (plain-56 behind plain-20, "
               "and behind ResNet-56); on a GPU it trains on all of them, as in the paper. The charts below are "
               "recorded runs chosen because they show what the text says.")
    own = students_run()
    for claim in CLAIMS:
        text, chart = st.columns(2, gap="large")
        with text:
            st.subheader(claim.heading)
            st.markdown(claim.text)
        with chart:
            claim_chart(claim, session.recorded_run_of(claim.reference), own)
    link("lab", "Open the Lab", ":material/science:")
    link("architecture", "See the blocks", ":material/account_tree:")
    link("gradients", "Look at the gradients", ":material/gradient:")

