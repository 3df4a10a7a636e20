# As ffnetsr_df2k_x4_paper.py, initialised from the x2 model of the same recipe: every weight but the
# reconstruction conv (whose 3*s^2 output channels differ) is copied. Point init_from at your x2 checkpoint
# (this project's or the authors' BasicSR file), or pass `ffnet superres train CONFIG --init-from X2.pth`.
_base_ = ["./ffnetsr_df2k_x4_paper.py"]
model = dict(init_from="work_dirs/ffnetsr_df2k_x2_paper/iter_1000000.pth")
