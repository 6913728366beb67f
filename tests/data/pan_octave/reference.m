% Runs the official MATLAB code on the cases of inputs.mat and saves every input and output to
% reference.mat. Our own driver: the functions it calls are the fetched originals (see README.md),
% which are not part of this repository. Run with GNU Octave and its image package:
%   octave --no-gui --quiet --eval "pkg load image; addpath('<folder of the official .m files>'); reference"
% from this folder.
in = load('inputs.mat');
out = in;
[out.latent_rgb, out.inlier_rgb] = deconv_outlier(in.blurred_rgb, in.kernel_rgb, 5/255, 0.003);
[out.latent_gray, out.inlier_gray] = deconv_outlier(in.blurred_gray, in.kernel_gray, 5/255, 0.01);
out.latent_rgb = double(out.latent_rgb);  out.inlier_rgb = double(out.inlier_rgb);
out.latent_gray = double(out.latent_gray);  out.inlier_gray = double(out.inlier_gray);
out.wrap_out = wrap_boundary_liu(in.wrap_in, [16 20]);
out.fft_sizes = opt_fft_size(in.fft_lengths);
out.rmap_3 = gradient_confidence_full(in.rmap_in, 3);
out.rmap_5 = gradient_confidence_full(in.rmap_in, 5);
% Par (unused by 'org') is passed because Octave evaluates both sides of shock.m's '&'.
out.shock_10_1 = shock(in.shock_in, 10, 1, 1, 'org', [0 0 0 0]);
out.shock_7_05 = shock(in.shock_in, 7, 0.5, 1, 'org', [0 0 0 0]);
% Pan's edge threshold (deconv_main.m of Pan et al. 2013): gradients of the blurred image, then
% determine_truck with a 5x5 and a 7x3 kernel.
I_X = conv2(in.truck_in, [-1,1;0,0], 'valid');
I_Y = conv2(in.truck_in, [-1,0;1,0], 'valid');
I_mag = sqrt(I_X.^2 + I_Y.^2);
out.truck_5x5 = determine_truck(I_X, I_Y, I_mag, 5, 5);
out.truck_7x3 = determine_truck(I_X, I_Y, I_mag, 7, 3);
save('-v7', 'reference.mat', '-struct', 'out');
