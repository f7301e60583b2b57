#version 330 core

out float f_mask;

void main() {
    f_mask = 1.0;
}
