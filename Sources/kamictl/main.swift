print("kamictl")
