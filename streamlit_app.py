"""ResNet Explorer in the browser: `streamlit run streamlit_app.py`.

The entry script draws what every page shares (navigation, presentation mode, where the data comes from) and
then runs the chosen page from `pages/`. Pages never train: they start jobs through `explorer.jobs` and read the
run store.
"""

import streamlit as st

from explorer.ui import panels, theme

st.set_page_config(page_title="ResNet Explorer", page_icon=":material/hub:", layout="wide")
navigation = st.navigation([
    st.Page("pages/1_Learn.py", title="Learn", icon=":material/school:", default=True),
    st.Page("pages/2_Lab.py", title="Lab", icon=":material/science:"),
    st.Page("pages/3_Architecture.py", title="Architecture", icon=":material/account_tree:"),
    st.Page("pages/4_Compare.py", title="Compare", icon=":material/compare_arrows:"),
    st.Page("pages/5_Gradients.py", title="Gradients", icon=":material/gradient:"),
])
theme.presentation_toggle()
panels.data_status()
navigation.run()
